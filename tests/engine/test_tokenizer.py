"""Tokenization against llama.cpp's, for the Llama 3 vocabulary (synth models) and SmolLM2's."""
import numpy as np
import pytest

from tests.support import ALL_MODELS, ROOT, SMOLLM2, loaded, model_path, reference
from llamba.engine.gguf_file import GGUFError, GGUFFile
from llamba.engine.tokenizer import StreamDecoder, Tokenizer


@pytest.mark.parametrize("name", ALL_MODELS)
def test_tokenize_matches_llama_cpp(name):
    tok = loaded(name).tokenizer
    for case in reference(name)["tokenize"]:
        assert tok.encode(case["text"], add_special=False, parse_special=False) == case["ids"], case["text"]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_tokenize_special_matches_llama_cpp(name):
    tok = loaded(name).tokenizer
    for case in reference(name)["tokenize_special"]:
        assert tok.encode(case["text"], add_special=True, parse_special=True) == case["ids"], case["text"]


@pytest.mark.parametrize("name", ["synth-llama3-small-q4_0", SMOLLM2])
def test_token_ids_follow_merge_order(name):
    """Ids serve as BPE ranks: that holds when the merges, in their rank order, produce tokens in
    id order (Llama 3 lists several merges per token, the vocabulary having come from tiktoken)."""
    lm = loaded(name)
    meta = lm.model.file.metadata
    ids = {t: i for i, t in enumerate(meta["tokenizer.ggml.tokens"].as_str())}
    merges = meta["tokenizer.ggml.merges"].as_str()
    results = []
    for merge in merges:
        left, right = merge.split(" ", 1)
        results.append(ids[left + right])
    assert np.all(np.diff(results) >= 0), "merge results are not in id order"


def test_llama3_special_tokens_and_stops():
    tok = loaded("synth-llama3-small-q4_0").tokenizer
    assert tok.encode("<|eot_id|>", add_special=False, parse_special=True) == [128009]
    assert tok.encode("<|eot_id|>", add_special=False, parse_special=False) != [128009]
    assert tok.encode("Hi", add_special=True) == [128000, 13347]
    assert {128001, 128009} <= tok.stop_ids
    assert tok.decode(tok.encode("Hello, World! ünï 🦙", add_special=False)) == "Hello, World! ünï 🦙"


def test_stream_decoder_never_emits_half_a_character():
    tok = loaded(SMOLLM2).tokenizer
    text = "emoji 🦙🚀👍🏽 and 日本語のテキスト"
    ids = tok.encode(text, add_special=False)
    assert any(len(tok.token_bytes(i).decode("utf-8", errors="ignore")) == 0 for i in ids), \
        "the test needs a token that is part of a character"
    decoder, pieces = StreamDecoder(tok), []
    for i in ids:
        piece = decoder.push(i)
        assert "\ufffd" not in piece
        pieces.append(piece)
    pieces.append(decoder.flush())
    assert "".join(pieces) == text


def test_unknown_pre_tokenizer_is_a_clear_error():
    with pytest.raises(GGUFError, match="unsupported pre-tokenizer 'klingon'"):
        Tokenizer(["a", "b"], [1, 1], pre="klingon", bos_id=None, eos_id=None, add_bos=False)


def test_models_with_one_vocabulary_share_one_tokenizer():
    """(Built once: tiktoken's encoder for 128k tokens holds the GIL for 80-200 ms.)"""
    small = [GGUFFile(model_path(f"synth-llama3-small-{q}")) for q in ("q4_0", "q8_0", "q4_k_m")]
    first = Tokenizer.from_gguf(small[0])
    assert all(Tokenizer.from_gguf(f) is first for f in small[1:])
    assert Tokenizer.from_gguf(GGUFFile(model_path(SMOLLM2))) is not first


# --- llama.cpp's own tokenizer tests (tests/data/vocab: its models/ggml-vocab-*.gguf, .inp, .out) ----
VOCABS = ROOT / "tests" / "data" / "vocab"


def llama_cpp_cases(name: str) -> list[tuple[str, list[int]]]:
    """The texts of ggml-vocab-`name`.gguf.inp and the ids llama.cpp gives each (add_special and
    parse_special off), as its test-tokenizer-0 reads them."""
    texts = (VOCABS / f"ggml-vocab-{name}.gguf.inp").read_bytes().decode().split("\n__ggml_vocab_test__\n")
    ids = (VOCABS / f"ggml-vocab-{name}.gguf.out").read_bytes().decode().split("\n")
    texts, ids = texts[:-1] if texts[-1] == "" else texts, ids[:-1] if ids[-1] == "" else ids
    assert len(texts) == len(ids) > 10
    return [(text, [int(i) for i in line.split()]) for text, line in zip(texts, ids)]


def vocab_tokenizer(vocab: str, pre: str | None = None) -> Tokenizer:
    """The tokenizer of a vocabulary file, its pre-tokenizer replaced by `pre` (the qwen35 test
    file has qwen2's vocabulary: only its pre-tokenizer differs, so one file serves both)."""
    f = GGUFFile(VOCABS / f"ggml-vocab-{vocab}.gguf")
    if pre is not None:
        f.metadata["tokenizer.ggml.pre"] = pre
    return Tokenizer.from_gguf(f)


@pytest.mark.parametrize("name, vocab", [("qwen2", "qwen2"), ("qwen35", "qwen2"), ("llama-spm", "llama-spm"),
                                         ("phi-3", "phi-3")])
def test_tokenize_matches_llama_cpps_own_tests(name, vocab):
    tok = vocab_tokenizer(vocab, name if vocab != name else None)
    prefix = " " if tok.encoding is None else ""  # (SentencePiece: the space put in front of the text)
    for text, ids in llama_cpp_cases(name):
        assert tok.encode(text, add_special=False, parse_special=False) == ids, text
        assert tok.decode(ids) == (prefix + text if text else "")


def test_sentencepiece_special_tokens_bos_and_byte_fallback():
    tok = vocab_tokenizer("llama-spm")
    assert tok.add_bos and tok.encode("Hi", add_special=True)[0] == tok.bos_id == 1
    # special text is text unless parsed; the text after a special token gets its leading space again
    assert tok.encode("</s>Hi", add_special=False, parse_special=True) == [2] + tok.encode("Hi", add_special=False)
    assert 2 not in tok.encode("</s>Hi", add_special=False, parse_special=False)
    # a character the vocabulary lacks is its UTF-8 bytes, each a <0xNN> token, and decodes back
    ids = tok.encode("🦙", add_special=False)
    assert [tok.token_bytes(i) for i in ids[-4:]] == [bytes([b]) for b in "🦙".encode()]
    assert tok.decode(ids) == " 🦙"
