"""The non-matmul steps of the forward pass: RMSNorm, RoPE, attention over the KV cache, SwiGLU.

Each works on a batch of n tokens and treats every token alike, so prefill and decode share them.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .kernels.simd import exp_f32, load_f32, load_i8, load_lanes, max_lanes, prefetch, splat_f32, store_f32, sum_lanes


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


def rope_tables(positions: np.ndarray, rope_dim: int, base: float,
                freq_factors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (n, rope_dim // 2) of angle pos * base^(-2i/rope_dim) / factor_i. The factors
    (`rope_freqs.weight`) carry Llama 3.1's long-context scaling; they are 1 without it."""
    inv_freq = base ** (-np.arange(0, rope_dim, 2, dtype=np.float64) / rope_dim)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors.astype(np.float64)
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


@njit(cache=True, nogil=True)
def apply_rope(x, cos, sin, halves):
    """Rotate the first rope_dim = 2 * cos.shape[1] dims of each head in pairs, in place: x (n,
    heads, head_dim). Pairs are adjacent (x[2i], x[2i+1]), as GGUF's Llama weights are permuted
    at conversion to have them, or with `halves` (every other family) x[i] and x[i + rope_dim/2]."""
    n, heads, head_dim = x.shape
    half = cos.shape[1]
    for t in range(n):
        for h in range(heads):
            for i in range(half):
                a, b = (i, i + half) if halves else (2 * i, 2 * i + 1)
                first, second = x[t, h, a], x[t, h, b]
                x[t, h, a] = first * cos[t, i] - second * sin[t, i]
                x[t, h, b] = first * sin[t, i] + second * cos[t, i]


TILE = 32  # keys per tile; tiles start at multiples of TILE from position 0, for every token
Q8 = 32  # dimensions per scale of a q8_0 KV cache
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
def attention(q, k_blocks, v_blocks, k_scales, v_scales, table, slots, positions, blocks, heads_per_job, out,
              scale, window):
    """Causal grouped-query attention of n tokens, token t at position positions[t] of KV slot
    slots[t] (with a `window` > 0, over the last `window` positions only, its own included), scores
    times `scale`, as flash attention computes it: keys a tile at a time, a running maximum and sum
    per query (online softmax), values accumulated per tile.
    q: (n, heads, head_dim); tile i of slot s is block table[s, i] of k_blocks (n_blocks,
    kv_heads, head_dim, TILE), keys transposed within each block so that 16 positions' scores are
    one vector, and of v_blocks (n_blocks, kv_heads, TILE, head_dim); both already hold the new
    tokens', as float32, as the bits of float16 (uint16) or as q8_0's int8 with its scales per 32
    dimensions (flat: k_scales of (n_blocks, kv_heads, head_dim / 32, TILE), v_scales of
    (n_blocks, kv_heads, TILE, head_dim / 32); unused otherwise); out: like q. Each tile is widened to float32 once for
    all the queries that read it, while the next one is fetched from memory.
    Every sum runs in a fixed order that depends only on the token's position (tiles from 0,
    dimensions and positions in fixed interleaved partial sums), so a token's result is the same
    in any batch."""
    n, n_heads, head_dim = q.shape
    kv_heads = k_blocks.shape[1]
    n_rep = n_heads // kv_heads
    groups = n_rep // heads_per_job
    scale = np.float32(scale)
    size = head_dim * TILE  # of one tile of one KV head, keys or values
    for job in prange((len(blocks) - 1) * kv_heads * groups):
        b, g, first = job // (kv_heads * groups), job // groups % kv_heads, job % groups * heads_per_job
        t0, t1 = blocks[b], blocks[b + 1]
        rows = (t1 - t0) * heads_per_job  # (token, head) pairs of this job
        # (np.empty and a fill, here and in every kernel: np.zeros and np.full are numba functions
        # of their own, which no cache keeps, compiled again in each process that compiles a kernel
        # calling them: 0.65 s of the 9 s a fresh start compiles, Zen 3)
        top, total, acc = np.empty(rows, np.float32), np.empty(rows, np.float32), np.empty(rows * head_dim, np.float32)
        top[:], total[:], acc[:] = -np.inf, 0, 0
        queries = np.empty(rows * head_dim, np.float32)
        keys, values, weights = np.empty(size, np.float32), np.empty(size, np.float32), np.empty(TILE, np.float32)
        for i in range(t1 - t0):
            for j in range(heads_per_job):
                for d in range(head_dim):
                    queries[(i * heads_per_job + j) * head_dim + d] = q[t0 + i, g * n_rep + first + j, d] * scale
        n_seen = (positions[t1 - 1] + TILE) // TILE
        for tile in range(max(0, positions[t0] + 1 - window) // TILE if window > 0 else 0, n_seen):
            here = (table[slots[t0], tile] * kv_heads + g) * size  # [block, g, 0, 0]
            if tile + 1 < n_seen:
                after = (table[slots[t0], tile + 1] * kv_heads + g) * size
                for e in range(after, after + size, 32):
                    prefetch(k_blocks, e)
                    prefetch(v_blocks, e)
            for e in range(0, size, 16):
                store_f32(keys, e, key_lanes(k_blocks, k_scales, here, e))
                store_f32(values, e, value_lanes(v_blocks, v_scales, here, e))
            for i in range(t1 - t0):
                stop = min(TILE, positions[t0 + i] + 1 - tile * TILE)  # keys of this tile the token sees
                begin = max(0, positions[t0 + i] + 1 - window - tile * TILE) if window > 0 else 0
                if stop <= 0 or begin >= TILE:
                    continue  # (so a token's sums are the same whatever tiles its block reads)
                for j in range(heads_per_job):
                    row = i * heads_per_job + j
                    lo, hi = _scores(queries, row * head_dim, keys, head_dim)
                    if stop < TILE or begin > 0:  # positions after the token's own, or out of its window
                        store_f32(weights, 0, lo)
                        store_f32(weights, 16, hi)
                        weights[:begin] = -np.inf
                        weights[stop:] = -np.inf
                        lo, hi = load_f32(weights, 0), load_f32(weights, 16)
                    new_top = max(top[row], max_lanes(lo), max_lanes(hi))
                    correction = np.exp(top[row] - new_top)
                    shift = splat_f32(new_top)
                    store_f32(weights, 0, exp_f32(lo - shift))
                    store_f32(weights, 16, exp_f32(hi - shift))
                    weights[:begin] = 0
                    weights[stop:] = 0
                    total[row] = total[row] * correction + sum_lanes(load_f32(weights, 0) + load_f32(weights, 16))
                    top[row] = new_top
                    _accumulate(acc, row * head_dim, correction, weights, stop, values, head_dim)
        for i in range(t1 - t0):
            for j in range(heads_per_job):
                row = i * heads_per_job + j
                for d in range(head_dim):
                    out[t0 + i, g * n_rep + first + j, d] = acc[row * head_dim + d] / total[row]


def key_lanes(k_blocks, k_scales, here, e):
    """16 keys of the tile at k_blocks[here:] (16 positions of one dimension, from e), as float32."""


@overload(key_lanes, inline="always")
def _key_lanes(k_blocks, k_scales, here, e):
    if k_blocks.dtype == types.int8:  # q8_0: times the 16 positions' scales of these 32 dimensions
        def widen(k_blocks, k_scales, here, e):
            d, p = e // TILE, e % TILE
            return load_i8(k_blocks, here + e) * load_f32(k_scales, here // Q8 + d // Q8 * TILE + p)
        return widen
    return lambda k_blocks, k_scales, here, e: load_lanes(k_blocks, here + e)


def value_lanes(v_blocks, v_scales, here, e):
    """16 values of the tile at v_blocks[here:] (16 dimensions of one position, from e), as float32."""


@overload(value_lanes, inline="always")
def _value_lanes(v_blocks, v_scales, here, e):
    if v_blocks.dtype == types.int8:  # q8_0: times the position's scale of these dimensions
        def widen(v_blocks, v_scales, here, e):
            return load_i8(v_blocks, here + e) * splat_f32(v_scales[here // Q8 + e // Q8])
        return widen
    return lambda v_blocks, v_scales, here, e: load_lanes(v_blocks, here + e)


@njit(inline="always")
def _scores(queries, o, keys, head_dim):
    """One query's (queries[o:o + head_dim]) scores against a tile of keys (head_dim, TILE), as
    two vectors of 16 positions; eight partial sums (dimensions 4i..4i+3, twice 16 positions), so
    that the multiply-adds do not wait on each other."""
    lo0, lo1, lo2, lo3 = splat_f32(0), splat_f32(0), splat_f32(0), splat_f32(0)
    hi0, hi1, hi2, hi3 = splat_f32(0), splat_f32(0), splat_f32(0), splat_f32(0)
    for d in range(0, head_dim, 4):
        k = d * TILE
        q0, q1, q2, q3 = splat_f32(queries[o + d]), splat_f32(queries[o + d + 1]), splat_f32(queries[o + d + 2]), \
            splat_f32(queries[o + d + 3])
        lo0, hi0 = lo0 + q0 * load_f32(keys, k), hi0 + q0 * load_f32(keys, k + 16)
        lo1, hi1 = lo1 + q1 * load_f32(keys, k + TILE), hi1 + q1 * load_f32(keys, k + TILE + 16)
        lo2, hi2 = lo2 + q2 * load_f32(keys, k + 2 * TILE), hi2 + q2 * load_f32(keys, k + 2 * TILE + 16)
        lo3, hi3 = lo3 + q3 * load_f32(keys, k + 3 * TILE), hi3 + q3 * load_f32(keys, k + 3 * TILE + 16)
    return (lo0 + lo1) + (lo2 + lo3), (hi0 + hi1) + (hi2 + hi3)


@njit(inline="always")
def _accumulate(acc, o, correction, weights, stop, values, head_dim):
    """acc[o:o + head_dim] = acc * correction + sum of weights[p] * values[p] over the tile's
    first `stop` positions; even and odd positions in two partial sums per 16 dimensions, 64
    dimensions at a time (eight sums that do not wait on each other; 16 at a time, two sums, the
    adds waited on each other and the loop ran at a third of the machine's multiply rate)."""
    for c in range(0, head_dim - head_dim % 64, 64):
        scale = splat_f32(correction)
        even0, even1 = load_f32(acc, o + c) * scale, load_f32(acc, o + c + 16) * scale
        even2, even3 = load_f32(acc, o + c + 32) * scale, load_f32(acc, o + c + 48) * scale
        odd0, odd1, odd2, odd3 = splat_f32(0), splat_f32(0), splat_f32(0), splat_f32(0)
        for p in range(0, stop - 1, 2):
            w, e = splat_f32(weights[p]), p * head_dim + c
            even0, even1 = even0 + w * load_f32(values, e), even1 + w * load_f32(values, e + 16)
            even2, even3 = even2 + w * load_f32(values, e + 32), even3 + w * load_f32(values, e + 48)
            w, e = splat_f32(weights[p + 1]), e + head_dim
            odd0, odd1 = odd0 + w * load_f32(values, e), odd1 + w * load_f32(values, e + 16)
            odd2, odd3 = odd2 + w * load_f32(values, e + 32), odd3 + w * load_f32(values, e + 48)
        if stop % 2:
            w, e = splat_f32(weights[stop - 1]), (stop - 1) * head_dim + c
            even0, even1 = even0 + w * load_f32(values, e), even1 + w * load_f32(values, e + 16)
            even2, even3 = even2 + w * load_f32(values, e + 32), even3 + w * load_f32(values, e + 48)
        store_f32(acc, o + c, even0 + odd0)
        store_f32(acc, o + c + 16, even1 + odd1)
        store_f32(acc, o + c + 32, even2 + odd2)
        store_f32(acc, o + c + 48, even3 + odd3)
    for c in range(head_dim - head_dim % 64, head_dim, 16):
        even, odd = load_f32(acc, o + c) * splat_f32(correction), splat_f32(0)
        for p in range(0, stop - 1, 2):
            even = even + splat_f32(weights[p]) * load_f32(values, p * head_dim + c)
            odd = odd + splat_f32(weights[p + 1]) * load_f32(values, (p + 1) * head_dim + c)
        if stop % 2:
            even = even + splat_f32(weights[stop - 1]) * load_f32(values, (stop - 1) * head_dim + c)
        store_f32(acc, o + c, even + odd)


def _gelu_table() -> np.ndarray:
    """GELU (tanh approximation) of every float16, rounded to float16: ggml's CPU table, which
    llama.cpp reads for inputs in (-10, 10)."""
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.float32(0.5) * x * (1 + np.tanh(np.float32(0.7978845608) * x * (1 + np.float32(0.044715) * x * x)))
    return y.astype(np.float16).astype(np.float32)


GELU_TABLE = _gelu_table()


def geglu(gate_up: np.ndarray) -> np.ndarray:
    """gelu(gate) * up, for gate_up (n, 2 ffn_dim) holding gate and up side by side, as llama.cpp
    computes it (ggml_vec_geglu_f32): the gate rounded to float16 and looked up in GELU_TABLE,
    0 at or below -10, the gate itself at or above 10."""
    ffn = gate_up.shape[1] // 2
    gate, up = gate_up[:, :ffn], gate_up[:, ffn:]
    gelu = np.where(gate <= -10, np.float32(0), np.where(gate >= 10, gate, GELU_TABLE[gate.astype(np.float16).view(np.uint16)]))
    return gelu * up


@njit(parallel=True, cache=True, nogil=True)
def swiglu(gate_up):
    """silu(gate) * up, for gate_up (n, 2 ffn_dim) holding gate and up side by side: 16 values at a
    time through exp_f32 (libm's expf, one value per call, was 3 ns a value: 3% of a prefill)."""
    n, width = gate_up.shape
    ffn = width // 2
    out = np.empty((n, ffn), np.float32)
    one = splat_f32(1)
    for job in prange(n * 16):  # 16 slices per token: work for every thread even at n = 1
        t, part = job // 16, job % 16
        row = gate_up[t]
        for j in range(part * ffn // 256 * 16, (part + 1) * ffn // 256 * 16, 16):
            g = load_f32(row, j)
            store_f32(out[t], j, g / (one + exp_f32(splat_f32(0) - g)) * load_f32(row, ffn + j))
        if part == 15:  # the last slice's values past a multiple of 16 (ffn % 16)
            for j in range(ffn // 16 * 16, ffn):
                out[t, j] = gate_up[t, j] / (np.float32(1) + np.exp(-gate_up[t, j])) * gate_up[t, ffn + j]
    return out
