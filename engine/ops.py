"""The non-matmul steps of the forward pass: RMSNorm, RoPE, attention over the KV cache, SwiGLU.

Each works on a batch of n tokens and treats every token alike, so prefill and decode share them.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x (n, dim) / sqrt(mean(x^2) + eps) * weight; the sum of squares in float64, as ggml."""
    mean_square = np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True)
    return (x * (1.0 / np.sqrt(mean_square + eps)).astype(np.float32)) * weight


def rope_tables(positions: np.ndarray, head_dim: int, base: float,
                freq_factors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (n, head_dim // 2) of angle pos * base^(-2i/head_dim) / factor_i. The factors
    (`rope_freqs.weight`) carry Llama 3.1's long-context scaling; they are 1 without it."""
    inv_freq = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors.astype(np.float64)
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of each head: x (n, heads, head_dim). GGUF's Llama
    weights are permuted at conversion so that this pairing is the model's own."""
    even, odd = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = even * c - odd * s
    out[..., 1::2] = even * s + odd * c
    return out


@njit(parallel=True, cache=True, nogil=True)
def attention(q, k_cache, v_cache, start, out):
    """Causal grouped-query attention of n new tokens at positions start..start+n-1.
    q: (n, heads, head_dim); k_cache, v_cache: (ctx, kv_heads, head_dim), already holding the new
    tokens' keys and values; out: (n, heads, head_dim)."""
    n, n_heads, head_dim = q.shape
    n_rep = n_heads // k_cache.shape[1]
    scale = np.float32(1.0 / np.sqrt(head_dim))
    for job in prange(n * n_heads):
        t, h = job // n_heads, job % n_heads
        kv = h // n_rep
        length = start + t + 1
        scores = np.empty(length, np.float32)
        top = np.float32(-np.inf)
        for p in range(length):
            s = np.float32(0)
            for i in range(head_dim):
                s += q[t, h, i] * k_cache[p, kv, i]
            scores[p] = s * scale
            top = max(top, scores[p])
        total = np.float32(0)
        for p in range(length):
            scores[p] = np.exp(scores[p] - top)
            total += scores[p]
        for i in range(head_dim):
            out[t, h, i] = 0
        for p in range(length):
            weight = scores[p] / total
            for i in range(head_dim):
                out[t, h, i] += weight * v_cache[p, kv, i]


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """silu(gate) * up."""
    return gate / (1.0 + np.exp(-gate)) * up
