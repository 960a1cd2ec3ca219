"""The Llama model: weights as views into the GGUF map, a KV cache, and the forward pass.

The forward pass follows meta-llama/llama3's `model.py`; weights keep its role names (wq, wk, wv,
wo; w1 = gate, w2 = down, w3 = up) and `GGUF_NAMES` maps them to the file's tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

from . import ops
from .config import LlamaConfig
from .gguf_file import GGUFError, GGUFFile, Tensor
from .kernels import SUPPORTED_TYPES, Activations, matmul

GGUF_NAMES = {
    "attn_norm": "blk.{i}.attn_norm.weight", "wq": "blk.{i}.attn_q.weight",
    "wk": "blk.{i}.attn_k.weight", "wv": "blk.{i}.attn_v.weight", "wo": "blk.{i}.attn_output.weight",
    "ffn_norm": "blk.{i}.ffn_norm.weight", "w1": "blk.{i}.ffn_gate.weight",
    "w2": "blk.{i}.ffn_down.weight", "w3": "blk.{i}.ffn_up.weight",
}


@dataclass
class Layer:
    attn_norm: np.ndarray  # (dim,)
    wq: Tensor             # (dim, dim)
    wk: Tensor             # (kv_dim, dim)
    wv: Tensor             # (kv_dim, dim)
    wo: Tensor             # (dim, dim)
    ffn_norm: np.ndarray   # (dim,)
    w1: Tensor             # (ffn_dim, dim) gate
    w2: Tensor             # (dim, ffn_dim) down
    w3: Tensor             # (ffn_dim, dim) up


@dataclass
class Weights:
    token_embd: Tensor          # (vocab, dim)
    layers: list[Layer]
    output_norm: np.ndarray     # (dim,)
    output: Tensor              # (vocab, dim); token_embd itself when embeddings are tied
    rope_freqs: np.ndarray | None  # (head_dim // 2,) long-context factors, Llama 3.1+

    @classmethod
    def from_gguf(cls, f: GGUFFile, c: LlamaConfig) -> "Weights":
        def tensor(name: str, shape: tuple[int, ...], types=SUPPORTED_TYPES) -> Tensor:
            t = f.tensors.get(name)
            if t is None:
                raise GGUFError(f"{f.path}: missing tensor {name!r}")
            if t.shape != shape:
                raise GGUFError(f"{f.path}: tensor {name!r} has shape {t.shape}, expected {shape}")
            if t.type not in types:
                raise GGUFError(f"{f.path}: tensor {name!r} has unsupported type {t.type.name}")
            return t

        def norm(name: str) -> np.ndarray:
            return tensor(name, (c.dim,), (T.F32,)).data

        layers = []
        for i in range(c.n_layers):
            n = {role: name.format(i=i) for role, name in GGUF_NAMES.items()}
            layers.append(Layer(
                attn_norm=norm(n["attn_norm"]),
                wq=tensor(n["wq"], (c.dim, c.dim)), wk=tensor(n["wk"], (c.kv_dim, c.dim)),
                wv=tensor(n["wv"], (c.kv_dim, c.dim)), wo=tensor(n["wo"], (c.dim, c.dim)),
                ffn_norm=norm(n["ffn_norm"]),
                w1=tensor(n["w1"], (c.ffn_dim, c.dim)), w2=tensor(n["w2"], (c.dim, c.ffn_dim)),
                w3=tensor(n["w3"], (c.ffn_dim, c.dim))))
        token_embd = tensor("token_embd.weight", (c.vocab_size, c.dim))
        output = tensor("output.weight", (c.vocab_size, c.dim)) if "output.weight" in f.tensors else token_embd
        rope_freqs = (tensor("rope_freqs.weight", (c.head_dim // 2,), (T.F32,)).data
                      if "rope_freqs.weight" in f.tensors else None)
        return cls(token_embd, layers, norm("output_norm.weight"), output, rope_freqs)


class KVCache:
    """Keys and values of one sequence, for every layer: (n_layers, n_ctx, kv_heads, head_dim)."""

    def __init__(self, c: LlamaConfig, n_ctx: int):
        self.n_ctx = n_ctx
        self.k = np.zeros((c.n_layers, n_ctx, c.n_kv_heads, c.head_dim), np.float32)
        self.v = np.zeros_like(self.k)


def embed(token_embd: Tensor, tokens: np.ndarray) -> np.ndarray:
    """Rows of the embedding table, dequantized: (n, dim) float32."""
    rows = token_embd.data[tokens]
    if token_embd.type == T.F32:
        return rows.astype(np.float32)
    raw = rows.view(np.uint8) if token_embd.type in (T.F16, T.BF16) else rows
    return dequantize(raw, token_embd.type).reshape(len(tokens), -1).astype(np.float32)


class Llama:
    def __init__(self, path: str | Path):
        self.file = GGUFFile(path)
        self.config = LlamaConfig.from_gguf(self.file)
        self.weights = Weights.from_gguf(self.file, self.config)

    def new_cache(self, n_ctx: int) -> KVCache:
        return KVCache(self.config, min(n_ctx, self.config.context_length))

    def forward(self, tokens, start: int, cache: KVCache, all_logits: bool = False) -> np.ndarray:
        """Run tokens (n,) at positions start..start+n-1, appending their keys and values to
        `cache`. Returns logits (n, vocab) if `all_logits`, else those of the last token (vocab,)."""
        c, w = self.config, self.weights
        tokens = np.asarray(tokens, dtype=np.int64)
        n = len(tokens)
        if start + n > cache.n_ctx:
            raise ValueError(f"context overflow: {start + n} tokens do not fit in {cache.n_ctx}")
        cos, sin = ops.rope_tables(np.arange(start, start + n), c.head_dim, c.rope_base, w.rope_freqs)
        x = embed(w.token_embd, tokens)  # (n, dim)
        for i, layer in enumerate(w.layers):
            # attention, with its input normed and quantized once for Q, K and V
            h = Activations(ops.rmsnorm(x, layer.attn_norm, c.rms_eps))
            q = matmul(layer.wq, h).reshape(n, c.n_heads, c.head_dim)
            k = matmul(layer.wk, h).reshape(n, c.n_kv_heads, c.head_dim)
            v = matmul(layer.wv, h).reshape(n, c.n_kv_heads, c.head_dim)
            q, k = ops.apply_rope(q, cos, sin), ops.apply_rope(k, cos, sin)
            cache.k[i, start:start + n] = k
            cache.v[i, start:start + n] = v
            attn = np.empty_like(q)
            ops.attention(q, cache.k[i], cache.v[i], start, attn)
            x = x + matmul(layer.wo, attn.reshape(n, c.dim))  # residual
            # feed-forward (SwiGLU)
            h = Activations(ops.rmsnorm(x, layer.ffn_norm, c.rms_eps))
            x = x + matmul(layer.w2, ops.swiglu(matmul(layer.w1, h), matmul(layer.w3, h)))
        x = ops.rmsnorm(x if all_logits else x[-1:], w.output_norm, c.rms_eps)
        logits = matmul(w.output, x)
        return logits if all_logits else logits[0]
