"""The non-matmul steps of the forward pass: RMSNorm, RoPE, attention over the KV cache, SwiGLU.

Each works on a batch of n tokens and treats every token alike, so prefill and decode share them.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels.simd import exp_f32, load_f32, load_lanes, max_lanes, splat_f32, store_f32, sum_lanes


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


TILE = 32  # keys per tile; tiles start at multiples of TILE from position 0, for every token
QUERIES = 8  # consecutive tokens of one slot that read each tile of keys together


def attention_jobs(slots: np.ndarray, positions: np.ndarray, n_heads: int, kv_heads: int,
                   threads: int) -> tuple[np.ndarray, int]:
    """How a step's attention is split up: the first token of each block of at most QUERIES
    consecutive tokens of one slot (and n, at the end), and how many query heads each job takes
    (all that share a KV head, or one each when that leaves too few jobs for the threads). Only
    the work is split: each token's arithmetic is the same whatever its block."""
    n = len(slots)
    starts, run = [], 0
    for t in range(n):
        same_run = t > 0 and slots[t] == slots[t - 1] and positions[t] == positions[t - 1] + 1
        run = run + 1 if same_run else 0
        if run % QUERIES == 0:
            starts.append(t)
    n_rep = n_heads // kv_heads
    heads_per_job = n_rep if len(starts) * kv_heads >= 2 * threads else 1
    return np.array(starts + [n], np.int64), heads_per_job


@njit(parallel=True, cache=True, nogil=True)
def attention(q, k_tiles, v_cache, slots, positions, blocks, heads_per_job, out):
    """Causal grouped-query attention of n tokens, token t at position positions[t] of KV slot
    slots[t], as flash attention computes it: keys a tile at a time, a running maximum and sum
    per query (online softmax), values accumulated per tile.
    q: (n, heads, head_dim); k_tiles: (n_slots, ctx / TILE, kv_heads, head_dim, TILE), keys
    transposed within each tile so that 16 positions' scores are one vector; v_cache:
    (n_slots, ctx, kv_heads, head_dim); both already hold the new tokens', as float32 or as the
    bits of float16 (uint16; widened as they are read); out: like q.
    Every sum runs in a fixed order that depends only on the token's position (tiles from 0,
    dimensions in order, even and odd ones apart), so a token's result is the same in any batch."""
    n, n_heads, head_dim = q.shape
    n_tiles, kv_heads = k_tiles.shape[1], k_tiles.shape[2]
    ctx = v_cache.shape[1]
    n_rep = n_heads // kv_heads
    groups = n_rep // heads_per_job
    scale = np.float32(1.0 / np.sqrt(head_dim))
    row_stride = kv_heads * head_dim  # from one position's values to the next
    scores = np.empty((n * n_heads, TILE), np.float32)  # one row per (token, head): no sharing
    for job in prange((len(blocks) - 1) * kv_heads * groups):
        b, g, first = job // (kv_heads * groups), job // groups % kv_heads, job % groups * heads_per_job
        t0, t1 = blocks[b], blocks[b + 1]
        s = slots[t0]
        top = np.full((t1 - t0) * heads_per_job, -np.inf, np.float32)
        total = np.zeros((t1 - t0) * heads_per_job, np.float32)
        acc = np.zeros((t1 - t0) * heads_per_job * head_dim, np.float32)
        for tile in range((positions[t1 - 1] + TILE) // TILE):
            p0 = tile * TILE
            keys = (((s * n_tiles + tile) * kv_heads + g) * head_dim) * TILE  # k_tiles[s, tile, g, 0, 0]
            values = ((s * ctx + p0) * kv_heads + g) * head_dim  # v_cache[s, p0, g, 0]
            for i in range(t1 - t0):
                t = t0 + i
                stop = min(TILE, positions[t] + 1 - p0)  # keys of this tile the token sees
                if stop <= 0:
                    continue
                for j in range(heads_per_job):
                    h, row = g * n_rep + first + j, i * heads_per_job + j
                    sc = scores[t * n_heads + h]
                    lo0, lo1, hi0, hi1 = splat_f32(0), splat_f32(0), splat_f32(0), splat_f32(0)
                    for d in range(0, head_dim, 2):
                        q0, q1 = splat_f32(q[t, h, d] * scale), splat_f32(q[t, h, d + 1] * scale)
                        k = keys + d * TILE
                        lo0 = lo0 + q0 * load_lanes(k_tiles, k)
                        hi0 = hi0 + q0 * load_lanes(k_tiles, k + 16)
                        lo1 = lo1 + q1 * load_lanes(k_tiles, k + TILE)
                        hi1 = hi1 + q1 * load_lanes(k_tiles, k + TILE + 16)
                    store_f32(sc, 0, lo0 + lo1)
                    store_f32(sc, 16, hi0 + hi1)
                    for p in range(stop, TILE):  # positions after the token's own
                        sc[p] = -np.inf
                    lo, hi = load_f32(sc, 0), load_f32(sc, 16)
                    new_top = max(top[row], max_lanes(lo), max_lanes(hi))
                    correction = np.exp(top[row] - new_top)
                    shift = splat_f32(new_top)
                    store_f32(sc, 0, exp_f32(lo - shift))
                    store_f32(sc, 16, exp_f32(hi - shift))
                    for p in range(stop, TILE):
                        sc[p] = 0
                    total[row] = total[row] * correction + sum_lanes(load_f32(sc, 0) + load_f32(sc, 16))
                    top[row] = new_top
                    o = row * head_dim
                    for c in range(0, head_dim, 16):
                        store_f32(acc, o + c, load_f32(acc, o + c) * splat_f32(correction))
                    for p in range(stop):
                        w, v = splat_f32(sc[p]), values + p * row_stride
                        for c in range(0, head_dim, 16):
                            store_f32(acc, o + c, load_f32(acc, o + c) + w * load_lanes(v_cache, v + c))
        for i in range(t1 - t0):
            for j in range(heads_per_job):
                row = i * heads_per_job + j
                for d in range(head_dim):
                    out[t0 + i, g * n_rep + first + j, d] = acc[row * head_dim + d] / total[row]


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
