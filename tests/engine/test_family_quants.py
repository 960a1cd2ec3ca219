"""The other families quantized as people download them (Q4_0, Q8_0, Q4_K_M: tests/support/families.py
writes each from a seed, with llama-quantize's choice of type per tensor, so Q4_K, Q5_K, Q6_K, Q5_0
and Q8_0 all occur), against two references made on the same files: llama.cpp's (its 8-bit
activations and float16 KV cache) and the float64 computation (`.exact.json`, which the engine
follows as closely as its activations' width allows: tests/support, EXACT_TOP5, EXACT_PERPLEXITY).
Each compares the top-5 logprobs at every step along the reference's own 64 greedy tokens after 8 prompts
(tests/support.reference_steps_followed).
Measured with 16-bit activations on an AMD Zen 1 (AVX2 path), 12 files x 512 steps: at most 0.0048 from
the exact computation's logprobs, 0.31 from llama.cpp's (its Q4_K_M rounding; 0.05-0.10 on Q8_0 and Q4_0);
perplexity within 5e-5 of the exact one and 2.1e-3 of llama.cpp's."""
import pytest

from llamba.engine.perplexity import perplexity
from tests.support import (EXACT_PERPLEXITY, EXACT_TOP5, GPL_TEXT, assert_batch_matches_alone, reference,
                           reference_steps_followed, require_file)
from tests.support.families import QUANT_STEPS, QUANTIZED_MODELS, checked

LLAMA_CPP_TOLERANCE = 0.5  # llama.cpp's own rounding: 8-bit activations before every product


@pytest.fixture(scope="module", params=list(QUANTIZED_MODELS))
def family(request):
    return request.param, *checked(request.param), reference(request.param, exact=True)


def test_greedy_steps_follow_the_exact_computation(family):
    _, lm, ref, exact = family
    assert [c["prompt_ids"] for c in exact["greedy"]] == [c["prompt_ids"] for c in ref["greedy"]]
    assert len(exact["greedy"]) == 8 and all(len(case["steps"]) == QUANT_STEPS for case in exact["greedy"])
    reference_steps_followed(lm.model, exact["greedy"], EXACT_TOP5)


def test_greedy_steps_follow_llama_cpp(family):
    """The file read as llama.cpp reads it (a layout misread alike by the engine and by gguf.quants,
    which the exact computation dequantizes with, would part from llama.cpp's)."""
    _, lm, ref, _ = family
    assert len(ref["greedy"]) == 8 and all(len(case["steps"]) == QUANT_STEPS for case in ref["greedy"])
    reference_steps_followed(lm.model, ref["greedy"], LLAMA_CPP_TOLERANCE)


def test_perplexity_matches_the_exact_computation_and_llama_cpp(family):
    _, lm, ref, exact = family
    text = require_file(GPL_TEXT).read_text()[:exact["perplexity"]["chars"]]
    ppl, chunks = perplexity(lm.model, lm.tokenizer, text, exact["perplexity"]["n_ctx"])
    assert chunks == exact["perplexity"]["chunks"] >= 4
    assert abs(ppl / exact["perplexity"]["ppl"] - 1) < EXACT_PERPLEXITY, (ppl, exact["perplexity"]["ppl"])
    assert abs(ppl / ref["perplexity"]["ppl"] - 1) < 1e-2, (ppl, ref["perplexity"]["ppl"])


def test_a_batch_gives_each_sequence_the_logits_it_gets_alone_bit_for_bit(family):
    _, lm, ref, _ = family
    assert_batch_matches_alone(lm.model, ref["greedy"])
