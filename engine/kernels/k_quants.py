"""llama.cpp's K-quants: Q4_K, Q5_K, Q6_K (256-value super-blocks) — repacking and products.

GGUF blocks (values in sub-blocks of 32 for Q4_K/Q5_K, of 16 for Q6_K):
- Q4_K, 144 bytes: fp16 d, fp16 dmin, 12 bytes of 6-bit scales sc and mins m, 128 bytes of
  nibbles (byte l of each 32 holds value 64c + l low, 64c + 32 + l high); value = d sc q - dmin m.
- Q5_K, 176 bytes: as Q4_K with 32 bytes of fifth bits before the nibbles (bit 2c of byte l tops
  value 64c + l, bit 2c + 1 tops 64c + 32 + l).
- Q6_K, 210 bytes: 128 bytes of low nibbles, 64 of 2-bit tops, 16 int8 scales, fp16 d;
  value = d sc (q - 32).
Repacked, every 32 values are nibbles as in Q4_0 and the top bits of each 32 follow as one vector
(Q5_K) or two (Q6_K), as layout.tops packs them.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .layout import (accumulate, dot, each_task, each_task_of_one, interleave, interleave_f16, interleave_scales,
                     nibbles, pack_nibbles, prefetch_ahead, scaled_dot, tops, with_fifth_bits)
from .isa import ACTIVATION_BITS
from .simd import load_bytes, load_f16, load_i8, load_i8_ints, splat_f32, splat_i32, store_i32, to_f32


def _scales_and_mins(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K's twelve bytes at offset 4 -> 8 six-bit scales and 8 mins per block."""
    s = blocks[:, :, 4:16]
    sc = np.concatenate([s[..., 0:4] & 63, (s[..., 8:12] & 15) | ((s[..., 0:4] >> 6) << 4)], axis=-1)
    mn = np.concatenate([s[..., 4:8] & 63, (s[..., 8:12] >> 4) | ((s[..., 4:8] >> 6) << 4)], axis=-1)
    rows = blocks.shape[0]
    return interleave_scales(sc.reshape(rows, -1)), interleave_scales(mn.reshape(rows, -1))


def _q4_k_values(blocks: np.ndarray, qs_offset: int) -> np.ndarray:
    qs = blocks[:, :, qs_offset:qs_offset + 128].reshape(*blocks.shape[:2], 4, 1, 32)
    return np.concatenate([qs & 15, qs >> 4], axis=3).reshape(blocks.shape[0], -1)


def pack_q4_k(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    blocks = raw.reshape(raw.shape[0], -1, 144)
    sc, mn = _scales_and_mins(blocks)
    values = _q4_k_values(blocks, 16)
    return interleave(pack_nibbles(values)), sc, mn, interleave_f16(blocks, 0), interleave_f16(blocks, 2)


def pack_q5_k(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    blocks = raw.reshape(raw.shape[0], -1, 176)
    sc, mn = _scales_and_mins(blocks)
    fifth = blocks[:, :, 16:48].reshape(*blocks.shape[:2], 1, 1, 32)
    shifts = (2 * np.arange(4)[:, None] + np.arange(2)[None, :]).astype(np.uint8)[..., None]
    values = _q4_k_values(blocks, 48) | (((fifth >> shifts) & 1) << 4).reshape(blocks.shape[0], -1)
    return (interleave(pack_nibbles(values & 15)), interleave(tops(values, 1)), sc, mn,
            interleave_f16(blocks, 0), interleave_f16(blocks, 2))


def pack_q6_k(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    rows = raw.shape[0]
    blocks = raw.reshape(rows, -1, 210)
    low = blocks[:, :, :128].reshape(rows, -1, 2, 2, 1, 32)      # half, which 32 bytes
    top = blocks[:, :, 128:192].reshape(rows, -1, 2, 1, 32)      # half
    quarters = [((low[:, :, :, i % 2, 0] & 15) if i < 2 else (low[:, :, :, i % 2, 0] >> 4))
                | (((top[:, :, :, 0] >> (2 * i)) & 3) << 4) for i in range(4)]
    values = np.stack(quarters, axis=3).reshape(rows, -1)      # value 128 h + 32 i + l
    scales = interleave_scales(np.ascontiguousarray(blocks[:, :, 192:208]).view(np.int8).reshape(rows, -1))
    return interleave(pack_nibbles(values & 15)), interleave(tops(values, 2)), scales, interleave_f16(blocks, 208)


# With 8-bit activations (q8_K: one scale per 256 values) a super-block is summed as llama.cpp sums
# it: each sub-block's integer dot times its integer scale, added exactly in int32 over the 256
# values (Q5_K at most 8 x 63 x 32 x 31 x 127, Q6_K 16 x 128 x 16 x 32 x 127: below 2^31; kept
# between blocks in a register for one token, in the accumulator's scratch half for many:
# layout.task_rows), then one float multiply. The float work per block of 32 had been a third of an
# AVX2 Q6_K product (2048 x 2048, 64 tokens, Zen 4: Q6_K 56 -> 85 G products/s, Q4_K 92 -> 96;
# AVX-512 VNNI Q6_K 141 -> 156, Q4_K 157 -> 170).
# With 16-bit activations (a scale per 32) each block goes to float alone.
SCRATCH = 1 if ACTIVATION_BITS == 8 else 0


@njit(inline="always")
def _add_sum(acc, t, c, s, carry, tokens):
    """Token t's int32 sum over the super-block so far, s (block c's) added: for one token, carry
    (it stays in a register: through memory, decoding was 3-4% slower than with float sums per
    block); else kept in acc's scratch half for the blocks to come."""
    if tokens == 1:
        return s + carry
    at = t * acc.shape[1] + 16
    if c % 8:
        s = s + load_bytes(acc, at)
    if c % 8 < 7:
        store_i32(acc, at, s)
    return s


@njit(inline="always")
def _min_terms(mins, sums32, t, c):
    """The sum over the 8 sub-blocks from c of dmin * m * token t's activations' sum, added as a
    tree (in this order on every path)."""
    m0, m1, m2, m3, m4, m5, m6, m7 = mins
    low = m0 * splat_f32(sums32[t, c]) + m1 * splat_f32(sums32[t, c + 1])
    low_mid = m2 * splat_f32(sums32[t, c + 2]) + m3 * splat_f32(sums32[t, c + 3])
    high_mid = m4 * splat_f32(sums32[t, c + 4]) + m5 * splat_f32(sums32[t, c + 5])
    high = m6 * splat_f32(sums32[t, c + 6]) + m7 * splat_f32(sums32[t, c + 7])
    return (low + low_mid) + (high_mid + high)


@njit(inline="always")
def _mins(dmin, mn, c):
    """dmin * m of the 8 sub-blocks from c."""
    return (dmin * load_i8(mn, 16 * c), dmin * load_i8(mn, 16 * c + 16), dmin * load_i8(mn, 16 * c + 32),
            dmin * load_i8(mn, 16 * c + 48), dmin * load_i8(mn, 16 * c + 64), dmin * load_i8(mn, 16 * c + 80),
            dmin * load_i8(mn, 16 * c + 96), dmin * load_i8(mn, 16 * c + 112))


@njit(inline="always")
def _q4_k_q5_k_block(bits, quants, tops, sc, mn, d, dmin, xq, a, acc, g, c, tokens, carry):
    """Q4_K (bits 4), or Q5_K (5) with `tops` holding the fifth bits (an empty array for Q4_K):
    sub-block c (32 values). 8-bit activations: d * sum(sc * dot) * the activations' scale -
    sum(dmin * m * the activations' sum) at the super-block's last sub-block."""
    scale, _, sums32 = a
    prefetch_ahead(quants[g], 256 * c, 256)
    v = nibbles(quants[g], 256 * c)
    if bits == 5:
        prefetch_ahead(tops[g], 64 * c, 64)
        v = with_fifth_bits(v, load_bytes(tops[g], 64 * c))
    row_d, row_dmin = load_f16(d[g], 16 * (c // 8)), load_f16(dmin[g], 16 * (c // 8))
    if ACTIVATION_BITS == 8:
        sub_scale = load_i8_ints(sc[g], 16 * c)
        s = carry
        if c % 8 < 7:
            for t in range(tokens):
                s = _add_sum(acc, t, c, scaled_dot(v, sub_scale, xq, t, 8 * c, bits, tokens), carry, tokens)
            return s if tokens == 1 else carry
        mins = _mins(row_dmin, mn[g], c - 7)
        for t in range(tokens):
            s = _add_sum(acc, t, c, scaled_dot(v, sub_scale, xq, t, 8 * c, bits, tokens), carry, tokens)
            low = _min_terms(mins, sums32, t, c - 7)
            accumulate(acc, t, to_f32(s) * (row_d * splat_f32(scale[t, c])) - low)
        return splat_i32(0)
    row_scale, row_min = row_d * load_i8(sc[g], 16 * c), row_dmin * load_i8(mn[g], 16 * c)
    for t in range(tokens):
        s = to_f32(dot(v, xq, t, 8 * c, bits, tokens)) * (row_scale * splat_f32(scale[t, c]))
        accumulate(acc, t, s - row_min * splat_f32(sums32[t, c]))
    return carry


@njit(inline="always")
def _q4_k_block(w, xq, a, acc, g, c, tokens, carry):
    quants, sc, mn, d, dmin = w  # (tops never read: see _q4_0_block)
    return _q4_k_q5_k_block(4, quants, quants, sc, mn, d, dmin, xq, a, acc, g, c, tokens, carry)


@njit(inline="always")
def _q5_k_block(w, xq, a, acc, g, c, tokens, carry):
    quants, tops, sc, mn, d, dmin = w
    return _q4_k_q5_k_block(5, quants, tops, sc, mn, d, dmin, xq, a, acc, g, c, tokens, carry)


@njit(inline="always")
def _q6_k_block(w, xq, a, acc, g, c, tokens, carry):
    """32 values: sub-blocks 2c and 2c + 1. 8-bit activations: d * sum(sc * (dot - 32 * the
    activations' sum)) * the activations' scale at the super-block's last sub-blocks."""
    (quants, tops, sc, d), (scale, sums16, _) = w, a
    two_bits = splat_i32(0x03030303)
    prefetch_ahead(quants[g], 256 * c, 256)
    prefetch_ahead(tops[g], 128 * c, 128)
    prefetch_ahead(sc[g], 32 * c, 32)
    v = nibbles(quants[g], 256 * c)
    h0, h1 = load_bytes(tops[g], 128 * c), load_bytes(tops[g], 128 * c + 64)
    first = (v[0] | ((h0 & two_bits) << 4), v[1] | (((h0 >> 2) & two_bits) << 4),
             v[2] | (((h0 >> 4) & two_bits) << 4), v[3] | (((h0 >> 6) & two_bits) << 4))
    second = (v[4] | ((h1 & two_bits) << 4), v[5] | (((h1 >> 2) & two_bits) << 4),
              v[6] | (((h1 >> 4) & two_bits) << 4), v[7] | (((h1 >> 6) & two_bits) << 4))
    row_d = load_f16(d[g], 16 * (c // 8))
    if ACTIVATION_BITS == 8:
        scale_first, scale_second = load_i8_ints(sc[g], 32 * c), load_i8_ints(sc[g], 32 * c + 16)
    else:
        scale_first, scale_second = row_d * load_i8(sc[g], 32 * c), row_d * load_i8(sc[g], 32 * c + 16)
    s = carry
    for t in range(tokens):
        s1 = dot(first, xq, t, 8 * c, 6, tokens) - splat_i32(32 * sums16[t, 2 * c])
        s2 = dot(second, xq, t, 8 * c + 4, 6, tokens) - splat_i32(32 * sums16[t, 2 * c + 1])
        if ACTIVATION_BITS == 8:
            s = _add_sum(acc, t, c, s1 * scale_first + s2 * scale_second, carry, tokens)
            if c % 8 == 7:
                accumulate(acc, t, to_f32(s) * (row_d * splat_f32(scale[t, c])))
        else:
            f = to_f32(s1) * scale_first + to_f32(s2) * scale_second
            accumulate(acc, t, f * splat_f32(scale[t, c]))
    if ACTIVATION_BITS == 8 and tokens == 1:
        return s if c % 8 < 7 else splat_i32(0)
    return carry


# The entry points, written out one by one on purpose: numba's on-disk cache knows a function by
# its qualified name and source line, so entry points made by one factory would share a cache
# entry, and one quant type's kernel could come back from the cache for another.
@njit(parallel=True, cache=True, nogil=True)
def q4_k_product(w, xq, a, out):
    each_task(_q4_k_block, SCRATCH, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q4_k_decode(w, xq, a, out):
    each_task_of_one(_q4_k_block, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q5_k_product(w, xq, a, out):
    each_task(_q5_k_block, SCRATCH, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q5_k_decode(w, xq, a, out):
    each_task_of_one(_q5_k_block, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q6_k_product(w, xq, a, out):
    each_task(_q6_k_block, SCRATCH, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q6_k_decode(w, xq, a, out):
    each_task_of_one(_q6_k_block, w, xq, a, out)
