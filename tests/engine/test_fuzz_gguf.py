"""Broken model files, a few dozen of the fuzzer's (bench/fuzz_gguf.py runs 500): each loads and
runs, or is one clean line naming the file — no crash, hang or traceback."""
from bench.fuzz_gguf import fuzz
from support import model_path


def test_mutated_files_load_or_fail_with_one_clean_line():
    failures = []
    outcomes = fuzz(model_path("synth-llama3-tiny-f32"), files=40, seed=1, log=failures.append)
    assert set(outcomes) <= {"loads", "error"}, failures
    assert outcomes["error"] > 0  # (the mutations do break files)
