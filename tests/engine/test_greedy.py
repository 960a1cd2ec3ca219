"""Greedy decoding against the references. The engine follows `<model>.exact.json` (the float64
computation) as closely as its activations' width allows (tests/support: EXACT_LEAD,
EXACT_LOGPROB): at every step where the reference's top-1/top-2 gap is at least the lead our
token must equal the reference's and our top-1 logprob be within the tolerance of it; at a
closer step the two may part (a case ends where they do, and goes on while both choose the same).
The KV cache's float16 rounding (the default, as llama.cpp's) stays within those bounds; float32
is checked too. q8_0 rounds each key and value to 1/254 of the largest in its 32 dimensions, which
moves these models' logprobs by up to ~0.04 more: for it a token must match where the gap is at
least 0.2 more, and its logprob be within 0.1 more. With 8-bit activations (the default) the steps
are also checked to be as close to the exact computation as llama.cpp's own (its reference, made
with the same rounding of activations)."""
import numpy as np
import pytest

from tests.support import (ALL_MODELS, EXACT_LEAD, EXACT_LOGPROB, greedy_steps_followed, loaded, logprobs_along,
                           reference)

SIXTEEN_DIM_HEADS = "synth-llama3-tiny-f32"  # q8_0 scales 32 dimensions at a time: not for its keys
KV_BOUNDS = {"f16": (0, 0), "f32": (0, 0), "q8_0": (0.2, 0.1)}  # (lead, tolerance) beyond the activations'


@pytest.mark.parametrize("name, kv_type", [(name, kv_type) for name in ALL_MODELS for kv_type in ("f16", "f32", "q8_0")
                                           if (name, kv_type) != (SIXTEEN_DIM_HEADS, "q8_0")])
def test_greedy_follows_exact_reference(name, kv_type):
    lm = loaded(name)
    assert not (kv_type == "q8_0" and lm.model.config.head_dim % 32)
    lead, tolerance = KV_BOUNDS[kv_type]
    compared = greedy_steps_followed(lm.model, reference(name, exact=True)["greedy"], kv_type,
                                     EXACT_LEAD + lead, EXACT_LOGPROB + tolerance)
    assert compared >= (40 if kv_type != "q8_0" else 25), f"only {compared} steps were comparable"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_steps_are_as_close_to_the_exact_computation_as_llama_cpps(name):
    """Along the exact computation's greedy tokens, on the steps where llama.cpp chose the same
    ones (its reference): the distance of our top-5 logprobs from the exact ones, in median and
    90th percentile, at most 1.15 times llama.cpp's (both round activations to 8 bits alike; the
    margin is for its one sample of float16 attention)."""
    lm = loaded(name)
    ours, theirs = [], []
    for exact, llama_cpp in zip(reference(name, exact=True)["greedy"], reference(name)["greedy"]):
        assert exact["prompt_ids"] == llama_cpp["prompt_ids"]
        for (step, logprobs), theirs_step in zip(logprobs_along(lm.model, exact), llama_cpp["steps"]):
            if theirs_step["id"] != step["id"]:
                break  # past here llama.cpp's logprobs are of another text
            their_top = dict(map(tuple, theirs_step["top"]))
            for token, expected in step["top"]:
                if token in their_top:
                    ours.append(abs(logprobs[token] - expected))
                    theirs.append(abs(their_top[token] - expected))
    assert len(ours) >= 200
    for q in (50, 90):
        assert np.percentile(ours, q) <= 1.15 * np.percentile(theirs, q), (q, np.percentile(ours, q),
                                                                          np.percentile(theirs, q))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_prompt_ids_match_reference_tokenization(name):
    tok = loaded(name).tokenizer
    for case in reference(name)["greedy"]:
        assert tok.encode(case["prompt"], add_special=True, parse_special=True) == case["prompt_ids"]
