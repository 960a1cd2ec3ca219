"""The non-matmul steps of the forward pass: RMSNorm, RoPE, attention over the KV cache, SwiGLU.

Each works on a batch of n tokens and treats every token alike, so prefill and decode share them.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def rmsnorm(x, weight, eps):
    """x (n, dim) / sqrt(mean(x^2) + eps) * weight; the sum of squares in float64, as ggml."""
    n, dim = x.shape
    out = np.empty_like(x)
    for t in range(n):
        squares = 0.0
        for j in range(dim):
            squares += np.float64(x[t, j]) * np.float64(x[t, j])
        scale = np.float32(1.0 / np.sqrt(squares / dim + eps))
        for j in range(dim):
            out[t, j] = (x[t, j] * scale) * weight[j]
    return out


def rope_tables(positions: np.ndarray, head_dim: int, base: float,
                freq_factors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (n, head_dim // 2) of angle pos * base^(-2i/head_dim) / factor_i. The factors
    (`rope_freqs.weight`) carry Llama 3.1's long-context scaling; they are 1 without it."""
    inv_freq = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors.astype(np.float64)
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


@njit(cache=True, nogil=True)
def apply_rope(x, cos, sin):
    """Rotate adjacent pairs (x[2i], x[2i+1]) of each head, in place: x (n, heads, head_dim).
    GGUF's Llama weights are permuted at conversion so that this pairing is the model's own."""
    n, heads, head_dim = x.shape
    for t in range(n):
        for h in range(heads):
            for i in range(head_dim // 2):
                even, odd = x[t, h, 2 * i], x[t, h, 2 * i + 1]
                x[t, h, 2 * i] = even * cos[t, i] - odd * sin[t, i]
                x[t, h, 2 * i + 1] = even * sin[t, i] + odd * cos[t, i]


# The sums over head_dim may be reordered (and so vectorized): the order is fixed when the
# kernel is compiled, the same for every token and batch.
@njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc", "contract"})
def attention(q, k_cache, v_cache, slots, positions, out):
    """Causal grouped-query attention of n tokens, token t at position positions[t] of KV slot
    slots[t]. q: (n, heads, head_dim); k_cache, v_cache: (n_slots, ctx, kv_heads, head_dim),
    already holding the new tokens' keys and values; out: (n, heads, head_dim)."""
    n, n_heads, head_dim = q.shape
    n_rep = n_heads // k_cache.shape[2]
    scale = np.float32(1.0 / np.sqrt(head_dim))
    for job in prange(n * n_heads):
        t, h = job // n_heads, job % n_heads
        s, kv, length = slots[t], h // n_rep, positions[t] + 1
        query = q[t, h]
        scores = np.empty(length, np.float32)
        for p in range(length):
            key = k_cache[s, p, kv]
            dot = np.float32(0)
            for i in range(head_dim):
                dot += query[i] * key[i]
            scores[p] = dot * scale
        top = scores.max()
        total = np.float32(0)
        for p in range(length):
            scores[p] = np.exp(scores[p] - top)
            total += scores[p]
        mixed = np.zeros(head_dim, np.float32)
        for p in range(length):
            weight = scores[p] / total
            value = v_cache[s, p, kv]
            for i in range(head_dim):
                mixed[i] += weight * value[i]
        out[t, h] = mixed


@njit(parallel=True, cache=True, nogil=True)
def swiglu(gate_up):
    """silu(gate) * up, for gate_up (n, 2 ffn_dim) holding gate and up side by side."""
    n, width = gate_up.shape
    ffn = width // 2
    out = np.empty((n, ffn), np.float32)
    for job in prange(n * 16):  # 16 slices per token: work for every thread even at n = 1
        t, part = job // 16, job % 16
        for j in range(part * ffn // 16, (part + 1) * ffn // 16):
            g = gate_up[t, j]
            out[t, j] = g / (np.float32(1) + np.exp(-g)) * gate_up[t, ffn + j]
    return out
