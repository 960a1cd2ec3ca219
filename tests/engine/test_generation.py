"""Sampling and generation on the default model (SmolLM2): seeds, filters, penalties, bias,
stop strings, end-of-generation tokens, logprobs."""
import numpy as np
import pytest

from tests.support import SMOLLM2, loaded
from llamba.engine.generate import StopStrings, generate
from llamba.engine.sampling import SamplingParams, apply_penalties, filter_candidates, largest, model_defaults


def run(params: SamplingParams, prompt="Once upon a time,"):
    lm = loaded(SMOLLM2)
    ids = lm.tokenizer.encode(prompt)
    return list(generate(lm.model, lm.tokenizer, ids, params, lm.model.new_cache(256)))


def test_same_seed_same_tokens_other_seed_other_tokens():
    p = dict(temperature=1.0, max_tokens=12)
    a = [e.token_id for e in run(SamplingParams(seed=7, **p))]
    b = [e.token_id for e in run(SamplingParams(seed=7, **p))]
    c = [e.token_id for e in run(SamplingParams(seed=8, **p))]
    assert a == b and a != c


def test_top_k_one_is_greedy():
    greedy = [e.token_id for e in run(SamplingParams(temperature=0, max_tokens=8))]
    top1 = [e.token_id for e in run(SamplingParams(temperature=1.5, top_k=1, seed=3, max_tokens=8))]
    assert greedy == top1


def test_logit_bias_forces_a_token():
    lm = loaded(SMOLLM2)
    forced = lm.tokenizer.encode(" banana", add_special=False)[0]
    events = run(SamplingParams(temperature=0, max_tokens=3, logit_bias={forced: 100.0}))
    assert [e.token_id for e in events] == [forced] * 3


def test_max_tokens_gives_length_and_logprobs_are_consistent():
    events = run(SamplingParams(temperature=0, max_tokens=5, logprobs=3))
    assert len(events) == 5 and events[-1].finish_reason == "length"
    for e in events:
        assert e.top_logprobs[0][0] == e.token_id and e.logprob == pytest.approx(e.top_logprobs[0][1])
        assert e.logprob <= 0 and len(e.top_logprobs) == 3


def test_chat_stops_on_end_of_turn():
    lm = loaded(SMOLLM2)
    ids = lm.chat_prompt_ids([{"role": "user", "content": "What is 2+2?"}])
    events = list(generate(lm.model, lm.tokenizer, ids, SamplingParams(temperature=0, max_tokens=64),
                           lm.model.new_cache(256)))
    assert events[-1].finish_reason == "stop" and events[-1].token_id in lm.tokenizer.stop_ids
    assert "4" in "".join(e.text for e in events)
    assert "<|im_end|>" not in "".join(e.text for e in events)


def test_stop_string_ends_text_before_it():
    full = "".join(e.text for e in run(SamplingParams(temperature=0, max_tokens=20)))
    stop = full.split()[2]
    events = run(SamplingParams(temperature=0, max_tokens=20, stop=[stop]))
    text = "".join(e.text for e in events)
    assert events[-1].finish_reason == "stop"
    assert text == full[:full.index(stop)] and stop not in text


def test_stop_strings_hold_back_partial_matches():
    s = StopStrings(["END"])
    assert s.push("abc E") == ("abc ", None)
    assert s.push("N") == ("", None)
    assert s.push("X") == ("ENX", None)
    assert s.push("..END tail") == ("..", "END")
    # the stop string reached first in the text is the one named, whatever the list's order
    s = StopStrings(["tail", "END"])
    assert s.push("..END tail") == ("..", "END")


def test_penalties_and_filters():
    logits = np.array([3.0, 2.0, -1.0, 0.5], np.float32)
    p = SamplingParams(repeat_penalty=2.0, presence_penalty=0.5, frequency_penalty=0.25)
    out = apply_penalties(logits, p, context=[0, 2], generated=[2, 2])
    assert out[0] == pytest.approx(1.5) and out[2] == pytest.approx(-2.0 - 0.5 - 0.5)
    # an end-of-turn token in the prompt is not held against ending the answer
    out = apply_penalties(logits, p, context=[0, 3], generated=[], unpenalized=frozenset({3}))
    assert out[0] == pytest.approx(1.5) and out[3] == logits[3]
    neutral = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    ids, probs = filter_candidates(logits, SamplingParams(**{**neutral, "top_p": 0.5}))
    assert list(ids) == [0] and probs[0] == 1.0
    ids, _ = filter_candidates(logits, SamplingParams(**{**neutral, "min_p": 0.3}))
    assert list(ids) == [0, 1]


def test_largest_are_a_stable_sorts_first_k():
    """top-k without a full sort picks what a stable sort would, ties and -inf included."""
    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(1, 2000))
        logits = (rng.integers(-4, 4, n) if trial % 2 else rng.standard_normal(n)).astype(np.float32)
        logits[rng.integers(0, n, n // 3 if trial % 3 == 0 else 0)] = -np.inf
        k = int(rng.integers(0, n + 2))
        stable = np.argsort(-logits, kind="stable")
        assert np.array_equal(largest(logits, k), stable[:k] if k > 0 else stable), (n, k)


def test_model_defaults_come_from_the_file_then_overrides():
    shipped = SamplingParams()
    assert (shipped.temperature, shipped.top_k, shipped.top_p, shipped.min_p) == (0.8, 40, 0.95, 0.05)
    meta = {"general.sampling.temp": 0.6, "general.sampling.top_k": 20}
    d = model_defaults(meta, top_k=5, min_p=None)
    assert (d.temperature, d.top_k, d.top_p, d.min_p) == (0.6, 5, 0.95, 0.05)
