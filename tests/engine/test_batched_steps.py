"""A batched step over several sequences gives each token exactly what it gets alone: prompts split
into chunks, decoded tokens of other sequences beside them, any order — bit for bit."""
import numpy as np

from tests.support import SMOLLM2, loaded
from llamba.engine.model import Span


def test_chunked_prompts_among_other_sequences_give_the_same_logits_as_alone():
    model = loaded(SMOLLM2).model
    rng = np.random.default_rng(5)
    prompts = [rng.integers(100, 40000, size).tolist() for size in (37, 11, 23)]
    alone = [model.forward(p, 0, model.new_cache(64)) for p in prompts]

    cache = model.new_cache(64, n_slots=4)
    # sequence 0 in chunks of 16, 16, 5; sequence 1 whole in the first step, then decoding;
    # sequence 2 joins in the second step, in slot 3
    first = model.step([Span(0, 0, prompts[0][:16]), Span(1, 0, prompts[1])], cache)
    second = model.step([Span(1, 11, [7]), Span(0, 16, prompts[0][16:32]), Span(3, 0, prompts[2])], cache)
    third = model.step([Span(0, 32, prompts[0][32:]), Span(1, 12, [8])], cache)
    assert np.array_equal(first[1], alone[1])
    assert np.array_equal(second[2], alone[2])
    assert np.array_equal(third[0], alone[0])
    # and sequence 1's decoded tokens match a lone run of the same tokens
    lone = model.new_cache(64)
    model.forward(prompts[1], 0, lone)
    assert np.array_equal(second[0], model.forward([7], 11, lone))
    assert np.array_equal(third[1], model.forward([8], 12, lone))
