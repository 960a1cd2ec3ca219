"""Embeddings (engine/embeddings.py) through the scheduler: pooled as llama.cpp pools them, the same
vector however the input was cut into steps or batched with generations (`python -m
bench.embeddings` compares them with llama.cpp's: cosine >= 0.998 on five texts)."""
import asyncio

import numpy as np
import pytest

from llamba.engine.embeddings import Embedding, model_pooling
from llamba.engine.errors import InvalidRequest
from llamba.engine.generate import generate
from llamba.engine.sampling import SamplingParams
from tests.support import SMOLLM2, loaded, model_runner

TEXTS = ["The cat sat on the mat.", "A kitten rested on the rug.", "Stock markets fell sharply today."]


def test_pooling_does_not_depend_on_how_the_input_was_cut():
    rows = np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32)
    for pooling, expected in (("mean", rows.astype(np.float64).mean(0)), ("cls", rows[0]), ("last", rows[-1])):
        whole, pieces = Embedding([1] * 7, pooling), Embedding([1] * 7, pooling)
        whole.add(rows)
        for a, b in ((0, 3), (3, 4), (4, 7)):
            pieces.add(rows[a:b])
        assert np.array_equal(whole.vector(), pieces.vector())
        assert np.allclose(whole.vector(), expected / np.linalg.norm(expected), atol=1e-6)


def embed(lm, texts, step_tokens=256, beside=None):
    async def go():
        runner = model_runner(lm, n_ctx=512, parallel=4, step_tokens=step_tokens)
        generation = runner.submit([beside], SamplingParams(temperature=0, max_tokens=16)) if beside else None
        job = runner.submit_embeddings([lm.tokenizer.encode(t, add_special=True) for t in texts], "mean")
        events = [e async for e in runner.stream(job)]
        tokens = [e.token_id async for e in runner.stream(generation)] if generation else None
        runner.close()
        return np.stack([e.vector for e in sorted(events, key=lambda e: e.index)]), tokens
    return asyncio.run(go())


def test_an_embedding_is_the_same_alone_in_small_steps_and_beside_a_generation():
    lm = loaded(SMOLLM2)
    alone, _ = embed(lm, TEXTS)
    assert np.allclose(np.linalg.norm(alone, axis=1), 1, atol=1e-6)
    similar, unrelated = alone[0] @ alone[1], alone[0] @ alone[2]
    assert similar > unrelated  # the cat and the kitten, against the stock market
    assert np.array_equal(embed(lm, TEXTS, step_tokens=4)[0], alone)
    prompt = lm.tokenizer.encode("Once upon a time", add_special=True)
    beside, tokens = embed(lm, TEXTS, beside=prompt)
    assert np.array_equal(beside, alone)
    greedy = SamplingParams(temperature=0, max_tokens=16)
    assert tokens == [e.token_id for e in generate(lm.model, lm.tokenizer, prompt, greedy, lm.model.new_cache(512))]


def test_inputs_are_checked_at_submission():
    lm = loaded(SMOLLM2)

    async def go():
        runner = model_runner(lm, n_ctx=64, parallel=2)
        errors = []
        for prompts in ([[]], [[10 ** 7]], [list(range(1, 66))], [[1], [2], [3]]):
            with pytest.raises(InvalidRequest) as e:
                runner.submit_embeddings(prompts, "mean")
            errors.append((e.value.param, e.value.code))
        runner.close()
        return errors
    assert asyncio.run(go()) == [("prompt", None), ("prompt", None), ("prompt", "context_length_exceeded"),
                                 ("prompt", None)]


def test_the_files_own_pooling_is_read_under_its_architecture():
    assert model_pooling({"general.architecture": "qwen3", "qwen3.pooling_type": 3}) == "last"
    assert model_pooling({"general.architecture": "llama", "llama.pooling_type": 1}) == "mean"
    assert model_pooling({"general.architecture": "qwen3", "llama.pooling_type": 3}) is None
    assert model_pooling({"general.architecture": "qwen3", "qwen3.pooling_type": 4}) is None  # (rank: not ours)
