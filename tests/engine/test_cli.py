"""The `llamba` console script, as a user runs it: its output is the engine's own."""
import re
import shutil
import subprocess
from dataclasses import replace


from llamba.engine.generate import generate
from tests.support import SMOLLM2, loaded, missing, model_path


def llamba(*args, stdin=None):
    exe = shutil.which("llamba")
    if exe is None:
        missing("the llamba console script (pip install -e .)")
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=600)


def greedy(ids: list[int], n: int) -> str:
    """The engine's text at temperature 0 with the model's other defaults, as the command has them."""
    lm = loaded(SMOLLM2)
    params = replace(lm.sampling, temperature=0, max_tokens=n)
    events = generate(lm.model, lm.tokenizer, ids, params, lm.model.new_cache(512))
    return "".join(e.text for e in events)


def test_generate_streams_the_engines_text_and_reports_speed():
    model_path(SMOLLM2)
    run = llamba("generate", "-p", "The capital of France is", "-n", "8", "--temperature", "0")
    assert run.returncode == 0, run.stderr
    lm = loaded(SMOLLM2)
    assert run.stdout.rstrip("\n") == greedy(lm.tokenizer.encode("The capital of France is"), 8).rstrip("\n")
    stats = re.search(r"\[(\d+) prompt tokens in [0-9.]+ s, (\d+) tokens generated, ([0-9.]+) tokens/s\]", run.stderr)
    assert stats and stats.group(2) == "8" and float(stats.group(3)) > 0


def test_chat_answers_through_the_template():
    model_path(SMOLLM2)
    question = "What is the capital of France?"
    run = llamba("chat", "-n", "24", "--temperature", "0", stdin=question + "\n")
    assert run.returncode == 0, run.stderr
    lm = loaded(SMOLLM2)
    answer = greedy(lm.chat_prompt_ids([{"role": "user", "content": question}]), 24)
    assert run.stdout.replace("> ", "").strip() == answer.strip()
