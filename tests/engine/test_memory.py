"""Loading maps the file: resident memory grows by far less than the file (no copy, no dequantize)."""
import subprocess
import sys

import pytest

from support import ROOT

PROBE = r"""
import sys
from llamba.engine.loader import LoadedModel

def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024

before = rss()
loaded = LoadedModel.load(sys.argv[1])
print(rss() - before)
"""


def test_loading_1b_q4_0_grows_rss_by_under_a_quarter_of_the_file():
    from bench.synth_model import VOCAB_SOURCE, bench_model
    if not VOCAB_SOURCE.exists():
        pytest.skip(f"{VOCAB_SOURCE} is absent")
    path = bench_model("q4_0")
    grown = int(subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True,
                               check=True, cwd=ROOT, timeout=600).stdout)
    size = path.stat().st_size
    print(f"file {size / 1e6:.0f} MB, resident memory grew {grown / 1e6:.0f} MB")
    assert grown < 0.25 * size
