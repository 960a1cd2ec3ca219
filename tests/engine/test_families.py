"""Other families' forward passes against llama.cpp, on small float32 models with each family's
real vocabulary and template (tests/support/families.py writes them from a seed; llama.cpp made
tests/data/<name>.json on the same files, with a float32 KV cache, so that its numbers carry
float32 rounding alone): tokenization equal, and every step's logprobs.
Measured: 3e-6 at most over 1,600 logprobs per family with a float32 KV cache."""
import pytest

from tests.support import assert_batch_matches_alone, reference_steps_followed
from tests.support.families import FAMILY_MODELS, checked


@pytest.fixture(scope="module", params=list(FAMILY_MODELS))
def family(request):
    return request.param, *checked(request.param)


def test_the_architecture_is_the_familys(family):
    name, lm, _ = family
    assert lm.model.config.arch == FAMILY_MODELS[name]["arch"]


def test_tokenize_matches_llama_cpp(family):
    _, lm, ref = family
    for case in ref["tokenize"]:
        assert lm.tokenizer.encode(case["text"], add_special=False, parse_special=False) == case["ids"], case["text"]
    for case in ref["greedy"]:
        assert lm.tokenizer.encode(case["prompt"], add_special=True, parse_special=True) == case["prompt_ids"]


@pytest.mark.parametrize("kv_type, tolerance", [("f32", 1e-4), ("f16", 2e-2)])
def test_every_step_follows_llama_cpp(family, kv_type, tolerance):
    """Along llama.cpp's own 40 greedy tokens after each prompt."""
    _, lm, ref = family
    reference_steps_followed(lm.model, ref["greedy"], tolerance, kv_type)


def test_a_batch_gives_each_sequence_the_logits_it_gets_alone_bit_for_bit(family):
    """Batch invariance, per family: four prompts prefilled in one step, then one token each in
    the next, against each sequence run alone."""
    _, lm, ref = family
    assert_batch_matches_alone(lm.model, ref["greedy"])
