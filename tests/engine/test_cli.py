"""The `llamba` console script, as a user runs it."""
import shutil
import subprocess

import pytest

from support import SMOLLM2, model_path


def llamba(*args, stdin=None):
    exe = shutil.which("llamba")
    if exe is None:
        pytest.skip("the llamba console script is not installed (pip install -e .)")
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=600)


def test_generate_streams_text_and_reports_speed():
    model_path(SMOLLM2)
    run = llamba("generate", "-p", "The capital of France is", "-n", "8", "--temperature", "0")
    assert run.returncode == 0, run.stderr
    assert "Paris" in run.stdout
    assert "tokens/s" in run.stderr


def test_chat_answers_through_the_template():
    model_path(SMOLLM2)
    run = llamba("chat", "-n", "24", "--temperature", "0", stdin="What is the capital of France?\n")
    assert run.returncode == 0, run.stderr
    assert "Paris" in run.stdout
