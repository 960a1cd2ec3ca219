"""Other families' forward passes against llama.cpp, on small float32 models with each family's
real vocabulary and template (tests/support/families.py writes them from a seed; llama.cpp made
tests/data/<name>.json on the same files, with a float32 KV cache, so that its numbers carry
float32 rounding alone): tokenization equal, and every step's logprobs.
Measured: 3e-6 at most over 1,600 logprobs per family with a float32 KV cache."""
import numpy as np
import pytest

from llamba.engine.loader import LoadedModel
from llamba.engine.model import Span
from llamba.engine.sampling import log_softmax
from tests.support import exact_activations, reference
from tests.support.families import FAMILY_MODELS, family_model, sha256


@pytest.fixture(scope="module", params=list(FAMILY_MODELS))
def family(request):
    name = request.param
    path = family_model(name)
    ref = reference(name)
    assert sha256(path) == ref["file_sha256"], f"{path} is not the file llama.cpp's reference was made on"
    return name, LoadedModel.load(path), ref


def test_the_architecture_is_the_familys(family):
    name, lm, _ = family
    assert lm.model.config.arch == FAMILY_MODELS[name]["arch"]


def test_tokenize_matches_llama_cpp(family):
    _, lm, ref = family
    for case in ref["tokenize"]:
        assert lm.tokenizer.encode(case["text"], add_special=False, parse_special=False) == case["ids"], case["text"]
    for case in ref["greedy"]:
        assert lm.tokenizer.encode(case["prompt"], add_special=True, parse_special=True) == case["prompt_ids"]


@exact_activations
@pytest.mark.parametrize("kv_type, tolerance", [("f32", 1e-4), ("f16", 2e-2)])
def test_every_step_follows_llama_cpp(family, kv_type, tolerance):
    """Along llama.cpp's own 40 greedy tokens after each prompt: at every step the logprobs of its
    top 5 within `tolerance` of llama.cpp's, and the same top token wherever its lead is clear.
    (Random weights leave many near ties, which test_greedy.py's protocol would stop at.)"""
    _, lm, ref = family
    for case in ref["greedy"]:
        ids = case["prompt_ids"] + case["output_ids"]
        logits = lm.model.forward(ids, 0, lm.model.new_cache(len(ids), kv_type=kv_type), all_logits=True)
        for k, step in enumerate(case["steps"]):
            logprobs = log_softmax(logits[len(case["prompt_ids"]) - 1 + k])
            for token, expected in step["top"]:
                assert abs(logprobs[token] - expected) < tolerance, (case["prompt"], k, token, logprobs[token], expected)
            if step["top"][0][1] - step["top"][1][1] > 2 * tolerance:
                assert int(logprobs.argmax()) == step["id"], (case["prompt"], k)


def test_a_batch_gives_each_sequence_the_logits_it_gets_alone_bit_for_bit(family):
    """Batch invariance, per family: four prompts prefilled in one step, then one token each in
    the next, against each sequence run alone."""
    _, lm, ref = family
    model = lm.model
    prompts = [case["prompt_ids"] for case in ref["greedy"][:4]]
    nexts = [case["output_ids"][0] for case in ref["greedy"][:4]]
    cache = model.new_cache(64, n_slots=4)
    together = model.step([Span(i, 0, p) for i, p in enumerate(prompts)], cache)
    then = model.step([Span(i, len(p), [t]) for i, (p, t) in enumerate(zip(prompts, nexts))], cache)
    for i, (prompt, token) in enumerate(zip(prompts, nexts)):
        alone = model.new_cache(64)
        assert np.array_equal(together[i], model.forward(prompt, 0, alone))
        assert np.array_equal(then[i], model.forward([token], len(prompt), alone))
