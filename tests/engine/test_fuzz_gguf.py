"""Broken model files, a few dozen of the fuzzer's (`python -m bench.fuzz_gguf` runs 500), run as
that command: each loads and runs, or is one clean line naming the file — no crash, hang or
traceback (the command exits 1 on any of those and names the file)."""
import re
import subprocess
import sys

from tests.support import ROOT, model_path


def test_mutated_files_load_or_fail_with_one_clean_line():
    done = subprocess.run([sys.executable, "-m", "bench.fuzz_gguf", "--files", "40", "--seed", "1",
                           "--model", str(model_path("synth-llama3-tiny-f32"))],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    errors = re.search(r"(\d+) error", done.stdout.splitlines()[-1])
    assert errors and int(errors.group(1)) > 0, done.stdout  # (the mutations do break files)
