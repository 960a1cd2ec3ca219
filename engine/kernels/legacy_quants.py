"""llama.cpp's 32-value quant types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 — repacking and products.

GGUF blocks: Q4_0 is fp16 d + 16 bytes of nibbles, value = d * (q - 8); Q4_1 is fp16 d, fp16 m
+ nibbles, value = d * q + m; Q5_0 and Q5_1 are Q4_0 and Q4_1 with 4 bytes (a little-endian
uint32) of fifth bits before the nibbles (bit j tops value j), value = d * (q - 16) and d * q + m;
Q8_0 is fp16 d + 32 int8, value = d * q. Repacked (see layout.py), Q8_0's int8 values are stored
offset by 128 (the byte dot product multiplies unsigned weights), and the fifth bits as layout.tops
packs them (llama-quantize falls back to Q5_0/Q5_1 in K-quant files for rows not a multiple of 256).

Per block, a row's product with a token is d * scale * (dot32 - zero * sums) [+ m * sum(x)]:
an exact integer dot, then float arithmetic in the same order for every batch size.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .layout import (accumulate, dot, each_task, each_task_of_one, interleave, interleave_f16, nibbles, prefetch_ahead,
                     tops, with_fifth_bits)
from .simd import load_bytes, load_f16, splat_f32, splat_i32, to_f32


def _blocks(raw: np.ndarray, nbytes: int) -> np.ndarray:
    return raw.reshape(raw.shape[0], -1, nbytes)


def _fifth_bits(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The uint32 of fifth bits at `offset` of each block, as layout.tops packs them."""
    qh = np.ascontiguousarray(blocks[:, :, offset:offset + 4]).view("<u4")  # (rows, blocks, 1)
    values = ((qh >> np.arange(32, dtype=np.uint32)) & 1) << 4  # bit j tops value j
    return interleave(tops(values.reshape(blocks.shape[0], -1), 1))


def pack_q4_0(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    blocks = _blocks(raw, 18)
    return interleave(blocks[:, :, 2:]), interleave_f16(blocks, 0)


def pack_q4_1(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    blocks = _blocks(raw, 20)
    return interleave(blocks[:, :, 4:]), interleave_f16(blocks, 0), interleave_f16(blocks, 2)


def pack_q5_0(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    blocks = _blocks(raw, 22)
    return interleave(blocks[:, :, 6:]), _fifth_bits(blocks, 2), interleave_f16(blocks, 0)


def pack_q5_1(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    blocks = _blocks(raw, 24)
    return interleave(blocks[:, :, 8:]), _fifth_bits(blocks, 4), interleave_f16(blocks, 0), interleave_f16(blocks, 2)


def pack_q8_0(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    blocks = _blocks(raw, 34)
    return interleave(blocks[:, :, 2:] ^ np.uint8(0x80)), interleave_f16(blocks, 0)


@njit(inline="always")
def _bytes(q, o):
    """The 8 vectors of a repacked Q8_0 block at q[o:o + 512]: values 0-15, then 16-31."""
    return (load_bytes(q, o), load_bytes(q, o + 64), load_bytes(q, o + 128), load_bytes(q, o + 192),
            load_bytes(q, o + 256), load_bytes(q, o + 320), load_bytes(q, o + 384), load_bytes(q, o + 448))


@njit(inline="always")
def _values(bits, quants, fifth, g, b):
    """Block b's 32 values per row of group g: bytes (8 bits), nibbles, or nibbles and their fifth bits."""
    if bits == 8:
        prefetch_ahead(quants[g], 512 * b, 512)
        return _bytes(quants[g], 512 * b)
    prefetch_ahead(quants[g], 256 * b, 256)
    v = nibbles(quants[g], 256 * b)
    if bits == 5:
        prefetch_ahead(fifth[g], 64 * b, 64)
        v = with_fifth_bits(v, load_bytes(fifth[g], 64 * b))
    return v


@njit(inline="always")
def _zero_point_block(bits, quants, fifth, d, xq, a, acc, g, b, tokens):
    """Q4_0, Q5_0 and Q8_0: d * (q - zero) per value, zero = 2^(bits - 1)."""
    scale, sums16, _ = a
    zero = 1 << (bits - 1)
    v = _values(bits, quants, fifth, g, b)
    prefetch_ahead(d[g], 16 * b, 32)
    row_scale = load_f16(d[g], 16 * b)
    for t in range(tokens):
        s = dot(v, xq, t, 8 * b, bits, tokens) - splat_i32(zero * (sums16[t, 2 * b] + sums16[t, 2 * b + 1]))
        accumulate(acc, t, to_f32(s) * (row_scale * splat_f32(scale[t, b])))


@njit(inline="always")
def _minimum_block(bits, quants, fifth, d, m, xq, a, acc, g, b, tokens):
    """Q4_1 and Q5_1: d * q + m per value."""
    scale, _, sums32 = a
    v = _values(bits, quants, fifth, g, b)
    prefetch_ahead(d[g], 16 * b, 32)
    prefetch_ahead(m[g], 16 * b, 32)
    row_scale, row_min = load_f16(d[g], 16 * b), load_f16(m[g], 16 * b)
    for t in range(tokens):
        s = to_f32(dot(v, xq, t, 8 * b, bits, tokens)) * (row_scale * splat_f32(scale[t, b]))
        accumulate(acc, t, s + row_min * splat_f32(sums32[t, b]))


@njit(inline="always")
def _q4_0_block(w, xq, a, acc, g, b, tokens, carry):
    """(4 and 8 bits read no fifth bits: the quants stand in for them. An empty array made here
    instead was allocated, and reference-counted, at every block.)"""
    quants, d = w
    _zero_point_block(4, quants, quants, d, xq, a, acc, g, b, tokens)
    return carry


@njit(inline="always")
def _q5_0_block(w, xq, a, acc, g, b, tokens, carry):
    quants, fifth, d = w
    _zero_point_block(5, quants, fifth, d, xq, a, acc, g, b, tokens)
    return carry


@njit(inline="always")
def _q8_0_block(w, xq, a, acc, g, b, tokens, carry):
    quants, d = w
    _zero_point_block(8, quants, quants, d, xq, a, acc, g, b, tokens)
    return carry


@njit(inline="always")
def _q4_1_block(w, xq, a, acc, g, b, tokens, carry):
    quants, d, m = w
    _minimum_block(4, quants, quants, d, m, xq, a, acc, g, b, tokens)
    return carry


@njit(inline="always")
def _q5_1_block(w, xq, a, acc, g, b, tokens, carry):
    quants, fifth, d, m = w
    _minimum_block(5, quants, fifth, d, m, xq, a, acc, g, b, tokens)
    return carry


# The entry points, written out one by one on purpose: numba's on-disk cache knows a function by
# its qualified name and source line, so entry points made by one factory would share a cache
# entry, and one quant type's kernel could come back from the cache for another.
@njit(parallel=True, cache=True, nogil=True)
def q4_0_product(w, xq, a, out):
    each_task(_q4_0_block, 0, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q4_0_decode(w, xq, a, out):
    each_task_of_one(_q4_0_block, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q8_0_product(w, xq, a, out):
    each_task(_q8_0_block, 0, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q8_0_decode(w, xq, a, out):
    each_task_of_one(_q8_0_block, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q4_1_product(w, xq, a, out):
    each_task(_q4_1_block, 0, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q4_1_decode(w, xq, a, out):
    each_task_of_one(_q4_1_block, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q5_0_product(w, xq, a, out):
    each_task(_q5_0_block, 0, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q5_0_decode(w, xq, a, out):
    each_task_of_one(_q5_0_block, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q5_1_product(w, xq, a, out):
    each_task(_q5_1_block, 0, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q5_1_decode(w, xq, a, out):
    each_task_of_one(_q5_1_block, w, xq, a, out)
