"""The layout every quantized kernel reads, and the steps its products share.

Weights are repacked once (see `engine/packed.py`) so that a SIMD lane is an output row: rows go
in groups of 16, and for each block of a group the bytes come as 64-byte vectors whose lane r
holds 4 consecutive bytes of row r. A byte dot product of such a vector with 4 activations
broadcast to every lane advances 16 rows at once, and no lane ever needs its neighbours (no
horizontal sums). Per-row block scales are stored the same way: 16 rows' scales side by side.

Within a 32-value block, 4-bit values sit as in GGUF's Q4_0: byte j holds value j (low nibble)
and value 16 + j (high nibble).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .dot import dot as byte_dot
from .simd import load_bytes, load_f32, prefetch_lines, splat_i32, store_f32

GROUP = 16  # rows per group: one 512-bit vector of int32 or float32 lanes


def interleave(per_row: np.ndarray) -> np.ndarray:
    """(rows, blocks, nbytes) bytes -> (rows / 16, blocks * nbytes * 16): for each group of 16
    rows and each block, nbytes / 4 vectors whose lane r holds 4 bytes of row r."""
    rows, blocks, nbytes = per_row.shape
    v = per_row.reshape(rows // GROUP, GROUP, blocks, nbytes // 4, 4).transpose(0, 2, 3, 1, 4)
    return np.ascontiguousarray(v).reshape(rows // GROUP, -1)


def interleave_scales(per_row: np.ndarray) -> np.ndarray:
    """(rows, blocks) scales -> (rows / 16, blocks * 16): the 16 rows' scales of each block together."""
    rows = per_row.shape[0]
    v = per_row.reshape(rows // GROUP, GROUP, -1).transpose(0, 2, 1)
    return np.ascontiguousarray(v).reshape(rows // GROUP, -1)


def interleave_f16(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The fp16 field at byte `offset` of each block (rows, blocks, bytes), interleaved as scales."""
    return interleave_scales(np.ascontiguousarray(blocks[:, :, offset:offset + 2]).view(np.uint16)[..., 0])


def pack_nibbles(values: np.ndarray) -> np.ndarray:
    """(rows, k) values < 16 -> (rows, k / 32, 16) bytes: value j of each 32 in the low nibble of
    byte j, value 16 + j in its high nibble."""
    rows, k = values.shape
    v = values.reshape(rows, k // 32, 2, 16).astype(np.uint8)
    return v[:, :, 0] | (v[:, :, 1] << 4)


def tops(values: np.ndarray, bits: int) -> np.ndarray:
    """(rows, k) values -> per 32, the bits above the nibble (1 for 5-bit values, 2 for 6-bit ones)
    as the kernels read them: 1 bit, bit s of byte j tops value 4s + j and bit 4 + s value 16 + 4s + j
    (rows, k / 32, 4); 2 bits, bits 2s..2s + 1 of byte j top value 4s + j in the first 4 bytes and
    value 16 + 4s + j in the next 4 (rows, k / 32, 8)."""
    rows, k = values.shape
    top = (values >> 4).reshape(rows, k // 32, 2, 4, 4).astype(np.uint8)  # half, s, j
    if bits == 1:
        shifts = (np.arange(2)[:, None] * 4 + np.arange(4)[None, :]).astype(np.uint8)
        return np.bitwise_or.reduce(top << shifts[:, :, None], axis=(2, 3))
    shifts = (2 * np.arange(4)).astype(np.uint8)
    return np.bitwise_or.reduce(top << shifts[:, None], axis=3).reshape(rows, k // 32, 8)


@njit(inline="always")
def nibbles(q, o):
    """The 4 vectors at q[o:o + 256] as 8 vectors of 4-bit values (32 values per row): values
    0-15 of the block, then 16-31."""
    mask = splat_i32(0x0F0F0F0F)
    w0, w1 = load_bytes(q, o), load_bytes(q, o + 64)
    w2, w3 = load_bytes(q, o + 128), load_bytes(q, o + 192)
    return (w0 & mask, w1 & mask, w2 & mask, w3 & mask,
            (w0 >> 4) & mask, (w1 >> 4) & mask, (w2 >> 4) & mask, (w3 >> 4) & mask)


@njit(inline="always")
def with_fifth_bits(v, h):
    """The 8 nibble vectors of a block (nibbles()) topped by the 1-bit tops vector h (tops(, 1))."""
    one = splat_i32(0x01010101)
    return (v[0] | ((h & one) << 4), v[1] | (((h >> 1) & one) << 4), v[2] | (((h >> 2) & one) << 4),
            v[3] | (((h >> 3) & one) << 4), v[4] | (((h >> 4) & one) << 4), v[5] | (((h >> 5) & one) << 4),
            v[6] | (((h >> 6) & one) << 4), v[7] | (((h >> 7) & one) << 4))


@njit(inline="always")
def dot(v, xq, t, p, bits, tokens):
    """Per row: sum over the values of v (4 vectors: 16 values, or 8: 32) of weight * activation,
    the activations of token t from int32 index p of xq = (hi, lo, even, odd) (activations.py);
    weights below 2^bits; in a kernel of `tokens` tokens (a literal 1 in the one-token kernels:
    dot.py multiplies differently for one token and for many)."""
    hi, lo, even, odd = xq
    return byte_dot(v, None, hi[t], lo[t], even[t], odd[t], p, bits, tokens)


@njit(inline="always")
def scaled_dot(v, scale, xq, t, p, bits, tokens):
    """dot times scale (an I32x16) per row: on the vpmaddubsw paths in the instruction that widens
    the sums (dot.py), elsewhere one multiply; exact either way."""
    hi, lo, even, odd = xq
    return byte_dot(v, scale, hi[t], lo[t], even[t], odd[t], p, bits, tokens)


GROUPS_PER_TASK = 8  # row groups per parallel task: one scratch accumulator each
AHEAD = 4096  # bytes of weights prefetched ahead of the one being read (measured best here)


@njit(inline="always")
def prefetch_ahead(array, index, nbytes):
    """Prefetch the nbytes (a literal) that the kernel will read AHEAD bytes after array[index:]:
    the hardware prefetcher alone leaves ~20% of the bandwidth unused."""
    prefetch_lines(array, index, AHEAD, nbytes)


@njit(inline="always")
def tasks(quants):
    """Parallel tasks over a weight's row groups (quants: one row per group)."""
    return (quants.shape[0] + GROUPS_PER_TASK - 1) // GROUPS_PER_TASK


@njit(inline="always")
def groups_of(task, quants):
    return range(GROUPS_PER_TASK * task, min(GROUPS_PER_TASK * (task + 1), quants.shape[0]))


# Blocks (of 32 values) per pass over a task's row groups when there are many tokens: each group
# reads every token's activations for its blocks, and a chunk of them (CHUNK x 32 values x 4 bytes
# x up to 128 tokens: 128 KB) stays in the core's cache while the task's groups read it in turn,
# where whole rows of them (4 MB for a width of 8,192) came from memory again for every group.
CHUNK = 8
# Up to this many (tokens x blocks), a task's groups go through their rows whole instead, as for one
# token: those tokens' activations (64 bytes a block as a path reads them) stay in a 512 KB cache
# anyway, and the weights stream from memory one group at a time, where the chunks' turns between 8
# groups left the memory idle while the products computed (2 threads, Zen 4: a Q4_K 28672 x 4096
# product of 2 tokens 3.3-4.4 -> 2.2-2.4 ms, of 8 tokens 6.0-6.2 -> 5.4; a 9-token step of SmolLM2
# 22.5 -> 20.6 ms; the same sums in the same order).
WHOLE_ROWS = 8192


@njit(inline="always")
def task_rows(block, scratch, w, xq, a, out, task, tokens):
    """The products of the task's row groups with `tokens` tokens: block(w, xq, a, acc, g, b,
    tokens, carry) adds block b of group g times each token to acc[:, :16] (acc: tokens x 16 (1 +
    scratch)) and returns what the next block of the group is to get as carry (an I32x16: a
    K-quant's int32 sum over a super-block, for one token; over many it keeps them in acc[:, 16:32],
    scratch 1). Each group's blocks come in order, one chunk at a time, so each sum is the same as
    block after block."""
    first = GROUPS_PER_TASK * task
    blocks = a[0].shape[1]
    step = blocks if tokens * blocks <= WHOLE_ROWS else CHUNK
    acc = np.empty((GROUPS_PER_TASK, tokens, GROUP * (1 + scratch)), np.float32)
    acc[:] = 0  # (not np.zeros: see ops.attention)
    for b0 in range(0, blocks, step):
        for g in groups_of(task, w[0]):
            group_acc, carry = acc[g - first], splat_i32(0)
            for b in range(b0, min(b0 + step, blocks)):
                carry = block(w, xq, a, group_acc, g, b, tokens, carry)
    for g in groups_of(task, w[0]):
        write_rows(acc[g - first], g, out)


@njit(inline="always")
def each_task(block, scratch, w, xq, a, out):
    """task_rows for each parallel task of a product of n tokens."""
    n = xq[0].shape[0]
    for task in prange(tasks(w[0])):
        task_rows(block, scratch, w, xq, a, out, task, n)


@njit(inline="always")
def each_task_of_one(block, w, xq, a, out):
    """each_task for one token (decoding), passing the constant 1: the compiled loop over tokens
    vanishes, and each block's weights go straight into the products instead of being kept
    (spilled) for tokens to come (decode products 13-28% faster, Zen 4). The same sums in the same
    order as each_task's: bit for bit the same results. (No scratch: one token's sum is the carry.)"""
    for task in prange(tasks(w[0])):
        task_rows(block, 0, w, xq, a, out, task, 1)


@njit(inline="always")
def write_rows(acc, g, out):
    """Scatter a group's per-token accumulators acc (n, 16) to out[:, 16 g : 16 g + 16]."""
    for t in range(acc.shape[0]):
        for r in range(GROUP):
            out[t, GROUP * g + r] = acc[t, r]


@njit(inline="always")
def accumulate(acc, t, value):
    """acc[t, :16] += value (a F32x16). (Indexed flat: a view acc[t] is reference-counted, and
    branches around it, as in k_quants.py, kept numba from pruning the counts: 2x slower.)"""
    row = t * acc.shape[1]
    store_f32(acc, row, load_f32(acc, row) + value)
