"""Small synthetic models of other families, written here from a seed: the family's real
vocabulary (tests/data/vocab, from llama.cpp) and chat template (tests/data/templates), random
float32 weights — or quantized (Q4_0, Q8_0, Q4_K_M) with the type llama-quantize gives each
tensor: 32-value types quantized by gguf (as llama-quantize's reference code does), K-quants as
random blocks (gguf has no K-quant quantizer, and llama.cpp is not installed in CI). The
references in tests/data/<name>.json were made by llama.cpp on the same files (`python -m
tests.support.families NAME`, with llama-cpp-python installed), and for a quantized file
<name>.exact.json by the float64 computation (tests/support/exact.py); each records its file's
sha256, which the file written here must have.

    python -m tests.support.families synth-qwen2-f32    # writes the reference JSON
    python -m tests.support.families synth-qwen2-q4_k_m # writes it and the float64 one (.exact.json)
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q, GGUFWriter
from gguf.quants import quantize

from llamba.engine.gguf_file import GGUFFile

from .fixtures import ROOT

DATA = ROOT / "tests" / "data"
CACHE = Path(os.environ.get("LLAMBA_CACHE", Path.home() / ".cache" / "llamba")) / "families"

# name -> architecture, vocabulary, template, and what differs in its shape
FAMILY_MODELS = {
    "synth-qwen2-f32": dict(arch="qwen2", vocab="qwen2", template="Qwen-Qwen2.5-7B-Instruct.jinja", eos="<|im_end|>",
                            biases=True, added="qwen2.5"),
    "synth-qwen3-f32": dict(arch="qwen3", vocab="qwen2", template="Qwen-Qwen3-0.6B.jinja", eos="<|im_end|>",
                            qk_norm=True, key_length=48, added="qwen3"),
    "synth-phi3-f32": dict(arch="phi3", vocab="phi-3", template="microsoft-Phi-3.5-mini-instruct.jinja", eos="<|end|>",
                           fused=True),
    # a Llama with a SentencePiece vocabulary: Llama 2, Mistral 7B, TinyLlama
    "synth-llama-spm-f32": dict(arch="llama", vocab="llama-spm", template="mistralai-Mistral-Nemo-Instruct-2407.jinja",
                                eos="</s>"),
}
# Qwen 2.5's and Qwen 3's added tokens, which llama.cpp's ggml-vocab-qwen2.gguf (Qwen 2's) leaves as
# [PADn]: at their ids, as a real file has them, so that `<tool_call>` and `<think>` are tokens of their
# own (convert_hf_to_gguf makes a token CONTROL when it looks like <|...|>, else USER_DEFINED, as these two are).
_QWEN25_ADDED = ["<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
                 "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>",
                 "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                 "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
ADDED_TOKENS = {"qwen2.5": _QWEN25_ADDED,
                "qwen3": _QWEN25_ADDED + ["<tool_response>", "</tool_response>", "<think>", "</think>"]}
QWEN_FIRST_ADDED = 151646  # the id of the first, in both
SHAPE = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=128, context=4096, rope_base=1e6, eps=1e-6)
# The same families quantized as llama-quantize lays out what people download, wide enough (256) for
# K-quants' blocks: synth-<family>-<q4_0|q8_0|q4_k_m>.
QUANTS = {"q4_0": 2, "q8_0": 7, "q4_k_m": 15}  # -> general.file_type (llama.cpp's LLAMA_FTYPE_MOSTLY_*)
QUANT_SHAPE = dict(SHAPE, dim=256, ffn=512)
QUANTIZED_MODELS = {name.replace("-f32", f"-{quant}"): dict(spec, quant=quant)
                    for name, spec in FAMILY_MODELS.items() for quant in QUANTS}
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far away,",
           "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n", "Ein kleiner Test auf Deutsch:",
           "日本語のテキストです。", "🦙 llamas and 🐪 camels", "1, 2, 3, 4, 5,"]
TOKENIZE = PROMPTS + ["", " ", "   leading spaces", "tabs\tand\nnewlines\r\n", "<|im_start|> as text",
                      "Hello, World! 12345678 ünï", "    def f(x):\n        return x ** 2\n",
                      "<tool_call>\n{}\n</tool_call> and <think>why</think>"]  # (user-defined tokens in Qwen's)
QUANT_STEPS = 64  # greedy steps per prompt in a quantized file's references
QUANT_TEXT_CHARS = 6000  # of the GPL-2 text, for a quantized file's perplexity in chunks of QUANT_CTX
QUANT_CTX = 256


def tensor_type(quant: str, name: str, layer: int, n_layers: int, cols: int) -> Q:
    """llama-quantize's choice for a weight matrix (llama.cpp src/llama-quant.cpp, no imatrix):
    the tied output matrix in Q6_K (Q8_0 files keep Q8_0); in Q4_K_M, Q6_K for attn_v and ffn_down
    on the layers `use_more_bits` picks, Q5_K for a fused QKV, Q4_K elsewhere; a K-quant whose rows
    are not a multiple of 256 falls back to Q5_0, Q5_1 or Q8_0."""
    more_bits = layer < n_layers / 8 or layer >= 7 * n_layers / 8 or (layer - n_layers / 8) % 3 == 2
    if quant == "q8_0":
        return Q.Q8_0
    if name == "token_embd.weight":  # tied: it is the output matrix too
        kind = Q.Q6_K
    elif quant == "q4_0":
        kind = Q.Q4_0
    elif name.endswith(("attn_v.weight", "ffn_down.weight")) and more_bits:
        kind = Q.Q6_K
    else:
        kind = Q.Q5_K if name.endswith("attn_qkv.weight") else Q.Q4_K
    if kind in (Q.Q4_K, Q.Q5_K, Q.Q6_K) and cols % 256:
        kind = {Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0}[kind]
    return kind


def k_blocks(rng: np.random.Generator, kind: Q, rows: int, cols: int, std: float) -> np.ndarray:
    """Random K-quant blocks (gguf has no K-quant quantizer): random quants, scales and mins, and
    each block's float16 scale chosen so that the values' standard deviation is about `std`.
    Q4_K/Q5_K: d, dmin, 12 bytes of 6-bit scales and mins, [Q5_K: 32 bytes of fifth bits,] nibbles;
    Q6_K: 128 + 64 bytes of quants, 16 int8 scales (kept to ±32), d."""
    n = rows * cols // 256
    size = {Q.Q4_K: 144, Q.Q5_K: 176, Q.Q6_K: 210}[kind]
    blocks = rng.integers(0, 256, (n, size), dtype=np.uint8)
    jitter = rng.uniform(0.5, 1.5, n)
    if kind == Q.Q6_K:
        blocks[:, 192:208] = rng.integers(-32, 33, (n, 16)).astype(np.int8).view(np.uint8)
        blocks[:, 208:210] = (std / (18.5 * 19) * jitter).astype(np.float16)[:, None].view(np.uint8)
    else:  # value = d * scale * q - dmin * min: dmin = d * mean(q) keeps the mean near zero
        d = std / (243 if kind == Q.Q4_K else 486) * jitter
        blocks[:, 0:2] = d.astype(np.float16)[:, None].view(np.uint8)
        blocks[:, 2:4] = (d * (7.5 if kind == Q.Q4_K else 15.5)).astype(np.float16)[:, None].view(np.uint8)
    return blocks.reshape(rows, cols // 256 * size)


def write(name: str, path: Path, shape: dict | None = None) -> None:
    """The file of FAMILY_MODELS or QUANTIZED_MODELS `name`, in its shape or in `shape` (SHAPE's keys,
    and key_length where heads are not dim / n_heads: bench/synth_model.py writes real models' shapes)."""
    spec = FAMILY_MODELS.get(name) or QUANTIZED_MODELS[name]
    quant, s = spec.get("quant"), shape or (QUANT_SHAPE if "quant" in spec else SHAPE)
    rng = np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
    arch = spec["arch"]
    head_dim = s.get("key_length") or spec.get("key_length") or s["dim"] // s["n_heads"]
    q_dim, kv_dim = s["n_heads"] * head_dim, s["n_kv_heads"] * head_dim
    vocab = GGUFFile(DATA / "vocab" / f"ggml-vocab-{spec['vocab']}.gguf").metadata
    n_vocab = len(vocab["tokenizer.ggml.tokens"])
    w = GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_context_length(s["context"])
    w.add_embedding_length(s["dim"])
    w.add_block_count(s["n_layers"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["n_heads"])
    w.add_head_count_kv(s["n_kv_heads"])
    if head_dim != s["dim"] // s["n_heads"]:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_rope_freq_base(s["rope_base"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_file_type(QUANTS.get(quant, 0))
    for key in ("model", "pre"):
        w.add_string(f"tokenizer.ggml.{key}", vocab[f"tokenizer.ggml.{key}"])
    tokens, types = vocab["tokenizer.ggml.tokens"].as_bytes(), vocab["tokenizer.ggml.token_type"].tolist()
    for i, text in enumerate(ADDED_TOKENS.get(spec.get("added"), []), QWEN_FIRST_ADDED):
        tokens[i], types[i] = text.encode(), 3 if text.startswith("<|") else 4  # CONTROL, USER_DEFINED
    w.add_token_list(tokens)
    w.add_token_types(types)
    if "tokenizer.ggml.merges" in vocab:
        w.add_token_merges(vocab["tokenizer.ggml.merges"].as_bytes())
    if "tokenizer.ggml.scores" in vocab:
        w.add_token_scores(vocab["tokenizer.ggml.scores"].tolist())
    w.add_eos_token_id(tokens.index(spec["eos"].encode()))
    w.add_bos_token_id(vocab["tokenizer.ggml.bos_token_id"])
    w.add_add_bos_token(bool(vocab.get("tokenizer.ggml.add_bos_token", False)))
    w.add_chat_template((DATA / "templates" / spec["template"]).read_text())

    def tensor(name: str, *shape: int, scale: float = 0.0) -> None:
        """Normal weights of standard deviation 1/sqrt(fan-in), or norms near 1 (scale > 0); in a
        quantized file a matrix takes the type llama-quantize gives it."""
        if scale:
            w.add_tensor(name, (1 + scale * rng.standard_normal(shape)).astype(np.float32))
        elif quant is None:
            w.add_tensor(name, (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32))
        else:
            layer = int(name.split(".")[1]) if name.startswith("blk.") else 0
            kind = tensor_type(quant, name, layer, s["n_layers"], shape[-1])
            if kind in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
                w.add_tensor(name, k_blocks(rng, kind, *shape, 1 / np.sqrt(shape[-1])), raw_dtype=kind)
            else:
                weights = (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
                w.add_tensor(name, quantize(weights, kind), raw_dtype=kind)

    tensor("token_embd.weight", n_vocab, s["dim"])
    tensor("output_norm.weight", s["dim"], scale=0.1)
    for i in range(s["n_layers"]):
        tensor(f"blk.{i}.attn_norm.weight", s["dim"], scale=0.1)
        tensor(f"blk.{i}.ffn_norm.weight", s["dim"], scale=0.1)
        if spec.get("fused"):  # Phi-3: Q, K, V in one tensor, and gate and up
            tensor(f"blk.{i}.attn_qkv.weight", q_dim + 2 * kv_dim, s["dim"])
        else:
            tensor(f"blk.{i}.attn_q.weight", q_dim, s["dim"])
            tensor(f"blk.{i}.attn_k.weight", kv_dim, s["dim"])
            tensor(f"blk.{i}.attn_v.weight", kv_dim, s["dim"])
        if spec.get("biases"):
            for part, size in (("q", q_dim), ("k", kv_dim), ("v", kv_dim)):
                w.add_tensor(f"blk.{i}.attn_{part}.bias", (0.5 * rng.standard_normal(size)).astype(np.float32))
        if spec.get("qk_norm"):
            tensor(f"blk.{i}.attn_q_norm.weight", head_dim, scale=0.1)
            tensor(f"blk.{i}.attn_k_norm.weight", head_dim, scale=0.1)
        tensor(f"blk.{i}.attn_output.weight", s["dim"], q_dim)
        if spec.get("fused"):
            tensor(f"blk.{i}.ffn_up.weight", 2 * s["ffn"], s["dim"])
        else:
            tensor(f"blk.{i}.ffn_gate.weight", s["ffn"], s["dim"])
            tensor(f"blk.{i}.ffn_up.weight", s["ffn"], s["dim"])
        tensor(f"blk.{i}.ffn_down.weight", s["dim"], s["ffn"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def family_model(name: str) -> Path:
    """The model file, written on first use (cached in $LLAMBA_CACHE/families)."""
    path = CACHE / f"{name}.gguf"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")  # (test workers may write it at once)
        write(name, partial)
        partial.rename(path)
    return path


def make_reference(name: str) -> dict:
    """llama.cpp (llama-cpp-python) on the file: its tokenization of TOKENIZE, and for each of
    PROMPTS 40 greedy steps with the top 5 logprobs of its raw logits (KV cache in float32, so
    that a float32 model's numbers are llama.cpp's float32 arithmetic alone)."""
    import llama_cpp

    from . import llama_cpp_reference as llama

    path = family_model(name)
    llm = llama_cpp.Llama(str(path), n_ctx=256, n_batch=256, logits_all=True, verbose=False, seed=0, n_threads=2,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    tokenize = [dict(text=t, ids=llm.tokenize(t.encode(), add_bos=False, special=False)) for t in TOKENIZE]
    greedy = []
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        greedy.append(llama.case(prompt, ids, llama.greedy(llm, ids, 40)))
    return dict(file_sha256=sha256(path), llama_cpp_python=llama_cpp.__version__, tokenize=tokenize, greedy=greedy)


def make_quant_references(name: str) -> tuple[dict, dict]:
    """A quantized file's references: llama.cpp's (its float16 KV cache, as llama-server runs) and
    the float64 computation's (tests/support/exact.py): QUANT_STEPS greedy steps after each of
    PROMPTS with their top 5 logprobs, and the perplexity of the GPL-2 text's first
    QUANT_TEXT_CHARS characters in chunks of QUANT_CTX tokens."""
    import llama_cpp

    from . import GPL_TEXT, llama_cpp_reference as llama
    from .exact import ExactModel, greedy, perplexity

    path = family_model(name)
    llm = llama_cpp.Llama(str(path), n_ctx=QUANT_CTX, n_batch=QUANT_CTX, logits_all=True, verbose=False, seed=0,
                          n_threads=2)
    exact_model = ExactModel(path)
    ours = dict(file_sha256=sha256(path), llama_cpp_python=llama_cpp.__version__, greedy=[])
    exact = dict(file_sha256=ours["file_sha256"], greedy=[])
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        ours["greedy"].append(llama.case(prompt, ids, llama.greedy(llm, ids, QUANT_STEPS)))
        exact["greedy"].append(llama.case(prompt, ids, greedy(exact_model, ids, QUANT_STEPS)))
    text_ids = llm.tokenize(GPL_TEXT.read_text()[:QUANT_TEXT_CHARS].encode(), add_bos=True, special=False)
    bos = llm.token_bos() if llm.token_bos() >= 0 else text_ids[0]
    for ref, model, measure in ((ours, llm, llama.perplexity), (exact, exact_model, perplexity)):
        ppl, chunks = measure(model, text_ids, QUANT_CTX, bos)
        ref["perplexity"] = dict(text="GPL-2", chars=QUANT_TEXT_CHARS, n_ctx=QUANT_CTX, chunks=chunks, ppl=ppl)
    return ours, exact


def checked(name: str):
    """The family file `name`, loaded, with its llama.cpp reference, once its bytes are checked to
    be the file that reference was made on."""
    from llamba.engine.loader import LoadedModel

    from . import reference
    path = family_model(name)
    ref = reference(name)
    assert sha256(path) == ref["file_sha256"], f"{path} is not the file llama.cpp's reference was made on"
    return LoadedModel.load(path), ref


if __name__ == "__main__":
    for name in sys.argv[1:]:
        if name in QUANTIZED_MODELS:
            for suffix, ref in zip(("", ".exact"), make_quant_references(name)):
                (DATA / f"{name}{suffix}.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1) + "\n")
                print(f"wrote tests/data/{name}{suffix}.json")
        else:
            (DATA / f"{name}.json").write_text(json.dumps(make_reference(name), ensure_ascii=False, indent=1) + "\n")
            print(f"wrote tests/data/{name}.json")
