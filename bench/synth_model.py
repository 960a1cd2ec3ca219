"""Writes a Llama-3.2-1B-shaped GGUF with random weights, once, and caches it.

Shape: vocabulary 128256 (the real Llama 3 vocabulary, copied from a synth model in
../shared/models), dim 2048, 16 layers, 32 heads, 8 KV heads, FFN 8192, tied embeddings and
Llama 3.1-style `rope_freqs`. Q4_0 files keep `token_embd` in Q6_K, as llama.cpp lays out its own.
Random quant bytes are all valid; only the fp16 scales are set, so values are normal-sized.

    python -m bench.synth_model [q4_0|q8_0]   # prints the path
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUFWriter, GGMLQuantizationType as T

from llamba.engine.gguf_file import GGUFFile

ROOT = Path(__file__).resolve().parent.parent
SHARED_MODELS = Path(os.environ.get("LLAMBA_SHARED", ROOT.parent / "shared")) / "models"  # as tests/support.py
VOCAB_SOURCE = SHARED_MODELS / "synth-llama3-small-q4_0.gguf"  # its Llama 3 vocabulary
CACHE = Path(os.environ.get("LLAMBA_CACHE", Path.home() / ".cache" / "llamba"))
SHAPE = dict(vocab=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn=8192)
# where each block type keeps its fp16 scale(s), and a typical magnitude for them
SCALE_FIELDS = {T.Q4_0: [(0, 0.003)], T.Q8_0: [(0, 0.0002)], T.Q6_K: [(208, 0.0005)]}


def random_blocks(ttype: T, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    block, nbytes = GGML_QUANT_SIZES[ttype]
    raw = rng.integers(0, 256, (rows, cols // block, nbytes), dtype=np.uint8)
    for offset, scale in SCALE_FIELDS[ttype]:
        raw[:, :, offset:offset + 2] = np.array([scale], np.float16).view(np.uint8)
    if ttype == T.Q6_K:  # small positive sub-block scales
        raw[:, :, 192:208] = rng.integers(8, 24, (rows, cols // block, 16), dtype=np.uint8)
    return raw.reshape(rows, -1)


def llama3_rope_factors(head_dim: int, base: float = 500000.0, factor: float = 32.0,
                        low: float = 1.0, high: float = 4.0, original_ctx: int = 8192) -> np.ndarray:
    """Llama 3.1's long-context factors, as llama.cpp's converter writes `rope_freqs`."""
    freqs = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * math.pi / freqs
    low_wl, high_wl = original_ctx / low, original_ctx / high
    smooth = (original_ctx / wavelen - low) / (high - low)
    factors = np.where(wavelen < high_wl, 1.0, np.where(wavelen > low_wl, factor, 1.0 / ((1 - smooth) / factor + smooth)))
    return factors.astype(np.float32)


def write_model(path: Path, quant: T, seed: int = 0) -> None:
    s, rng = SHAPE, np.random.default_rng(seed)
    head_dim = s["dim"] // s["n_heads"]
    vocab = GGUFFile(VOCAB_SOURCE).metadata
    w = GGUFWriter(str(path), "llama")
    w.add_name(f"llamba-bench-llama3.2-1b-shaped-{quant.name.lower()}")
    w.add_context_length(131072)
    w.add_embedding_length(s["dim"])
    w.add_block_count(s["n_layers"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["n_heads"])
    w.add_head_count_kv(s["n_kv_heads"])
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(s["vocab"])
    w.add_file_type(2 if quant == T.Q4_0 else 7)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(vocab["tokenizer.ggml.tokens"].as_bytes())
    w.add_token_types(vocab["tokenizer.ggml.token_type"].tolist())
    w.add_token_merges(vocab["tokenizer.ggml.merges"].as_bytes())
    w.add_bos_token_id(128000)
    w.add_eos_token_id(128009)
    w.add_add_bos_token(True)
    w.add_chat_template(vocab["tokenizer.chat_template"])

    def matrix(name: str, rows: int, cols: int, ttype: T = quant) -> None:
        w.add_tensor(name, random_blocks(ttype, rows, cols, rng), raw_dtype=ttype)

    ones = np.ones(s["dim"], np.float32)
    matrix("token_embd.weight", s["vocab"], s["dim"], T.Q6_K if quant == T.Q4_0 else quant)
    w.add_tensor("rope_freqs.weight", llama3_rope_factors(head_dim))
    w.add_tensor("output_norm.weight", ones)
    kv_dim = s["n_kv_heads"] * head_dim
    for i in range(s["n_layers"]):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        matrix(f"blk.{i}.attn_q.weight", s["dim"], s["dim"])
        matrix(f"blk.{i}.attn_k.weight", kv_dim, s["dim"])
        matrix(f"blk.{i}.attn_v.weight", kv_dim, s["dim"])
        matrix(f"blk.{i}.attn_output.weight", s["dim"], s["dim"])
        matrix(f"blk.{i}.ffn_gate.weight", s["ffn"], s["dim"])
        matrix(f"blk.{i}.ffn_up.weight", s["ffn"], s["dim"])
        matrix(f"blk.{i}.ffn_down.weight", s["dim"], s["ffn"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def bench_model(quant: str = "q4_0") -> Path:
    """The cached 1B-shaped file of this quant type, written on first use."""
    ttype = {"q4_0": T.Q4_0, "q8_0": T.Q8_0}[quant]
    path = CACHE / f"llama3.2-1b-shaped-{quant}.gguf"
    if not path.exists():
        if not VOCAB_SOURCE.exists():
            raise FileNotFoundError(f"{VOCAB_SOURCE} (the Llama 3 vocabulary) is absent")
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        write_model(partial, ttype)
        partial.rename(path)
    return path


def bench_q4_k_m() -> Path:
    """The 1B-shaped Q4_K_M file: llama.cpp's llama-quantize on the Q8_0 one, as users get theirs."""
    path = CACHE / "llama3.2-1b-shaped-q4_k_m.gguf"
    if not path.exists():
        from .llama_server import llama_cpp_binary
        partial = path.with_suffix(".partial")
        subprocess.run([str(llama_cpp_binary("llama-quantize")), "--allow-requantize", str(bench_model("q8_0")),
                        str(partial), "Q4_K_M"], check=True, stdout=subprocess.DEVNULL)
        partial.rename(path)
    return path


# The other families in their real models' shapes, laid out as llama-quantize lays out Q4_K_M
# (tests/support/families.py, random blocks): the 3.8B and 7B with fewer layers (speed per layer is
# what compares; a whole one would take minutes a run here).
FAMILY_SHAPES = {
    "qwen2": ("Qwen2.5-0.5B-shaped Q4_K_M", "synth-qwen2-q4_k_m",
              dict(dim=896, n_layers=24, n_heads=14, n_kv_heads=2, ffn=4864, context=32768, rope_base=1e6, eps=1e-6)),
    "qwen3": ("Qwen3-0.6B-shaped Q4_K_M", "synth-qwen3-q4_k_m",
              dict(dim=1024, n_layers=28, n_heads=16, n_kv_heads=8, key_length=128, ffn=3072, context=40960,
                   rope_base=1e6, eps=1e-6)),
    "phi3": ("Phi-3-mini-shaped Q4_K_M, 8 of 32 layers", "synth-phi3-q4_k_m",
             dict(dim=3072, n_layers=8, n_heads=32, n_kv_heads=32, ffn=8192, context=4096, rope_base=1e4, eps=1e-5)),
    "mistral": ("Mistral-7B-shaped Q4_K_M, 4 of 32 layers", "synth-llama-spm-q4_k_m",
                dict(dim=4096, n_layers=4, n_heads=32, n_kv_heads=8, ffn=14336, context=32768, rope_base=1e6,
                     eps=1e-5)),
}
BENCH_MODELS = {"q4_0": "1B-shaped Q4_0", "q8_0": "1B-shaped Q8_0", "q4_k_m_1b": "1B-shaped Q4_K_M",
                "smollm2": "SmolLM2-135M Q4_1", "q4_k_m": "synth small Q4_K_M", "gemma3": "Gemma 3 270M Q4_K_M",
                **{name: label for name, (label, _, _) in FAMILY_SHAPES.items()}}


def bench_family(name: str) -> Path:
    """A FAMILY_SHAPES file, written on first use."""
    _, family, shape = FAMILY_SHAPES[name]
    path = CACHE / f"{name}-bench-q4_k_m.gguf"
    if not path.exists():
        from tests.support.families import write
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        write(family, partial, shape)
        partial.rename(path)
    return path


def bench_file(name: str) -> Path:
    """A benchmark model by its short name (BENCH_MODELS)."""
    if name == "smollm2":
        from llamba.engine.loader import default_model_path
        return default_model_path()
    if name == "q4_k_m":
        return SHARED_MODELS / "synth-llama3-small-q4_k_m.gguf"
    if name == "q4_k_m_1b":
        return bench_q4_k_m()
    if name == "gemma3":  # (the real file, from its PyPI package: tests/support/gemma3.py)
        from tests.support.gemma3 import gemma3_path
        return gemma3_path()
    if name in FAMILY_SHAPES:
        return bench_family(name)
    return bench_model(name)


if __name__ == "__main__":
    print(bench_model(sys.argv[1] if len(sys.argv) > 1 else "q4_0"))
