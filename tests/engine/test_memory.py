"""Loading maps the file: resident memory grows by far less than the file (no copy, no dequantize)."""
import subprocess
import sys
from pathlib import Path


from tests.support import MODELS_DIR, ROOT, require_file

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
    require_file(MODELS_DIR / "synth-llama3-small-q4_0.gguf")  # bench/synth_model.py takes its vocabulary
    path = Path(subprocess.run([sys.executable, "-m", "bench.synth_model", "q4_0"], capture_output=True, text=True,
                               check=True, cwd=ROOT, timeout=600).stdout.splitlines()[-1])
    grown = int(subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True,
                               check=True, cwd=ROOT, timeout=600).stdout)
    size = path.stat().st_size
    print(f"file {size / 1e6:.0f} MB, resident memory grew {grown / 1e6:.0f} MB")
    assert grown < 0.25 * size
