"""llama.cpp's 32-value quant types: Q4_0, Q4_1, Q8_0 — repacking and products.

GGUF blocks: Q4_0 is fp16 d + 16 bytes of nibbles, value = d * (q - 8); Q4_1 is fp16 d, fp16 m
+ nibbles, value = d * q + m; Q8_0 is fp16 d + 32 int8, value = d * q. Repacked (see layout.py),
Q8_0's int8 values are stored offset by 128 (the byte dot product multiplies unsigned weights).

Per block, a row's product with a token is d * scale * (dot32 - zero * sums) [+ m * sum(x)]:
an exact integer dot, then float arithmetic in the same order for every batch size.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .layout import (accumulate, dot, each_task, each_task_of_one, groups_of, interleave, interleave_f16, nibbles,
                     prefetch_ahead, write_rows)
from .simd import load_bytes, load_f16, splat_f32, splat_i32, to_f32


def _blocks(raw: np.ndarray, nbytes: int) -> np.ndarray:
    return raw.reshape(raw.shape[0], -1, nbytes)


def pack_q4_0(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    blocks = _blocks(raw, 18)
    return interleave(blocks[:, :, 2:]), interleave_f16(blocks, 0)


def pack_q4_1(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    blocks = _blocks(raw, 20)
    return interleave(blocks[:, :, 4:]), interleave_f16(blocks, 0), interleave_f16(blocks, 2)


def pack_q8_0(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    blocks = _blocks(raw, 34)
    return interleave(blocks[:, :, 2:] ^ np.uint8(0x80)), interleave_f16(blocks, 0)


@njit(inline="always")
def _bytes(q, o):
    """The 8 vectors of a repacked Q8_0 block at q[o:o + 512]: values 0-15, then 16-31."""
    return (load_bytes(q, o), load_bytes(q, o + 64), load_bytes(q, o + 128), load_bytes(q, o + 192),
            load_bytes(q, o + 256), load_bytes(q, o + 320), load_bytes(q, o + 384), load_bytes(q, o + 448))


@njit(inline="always")
def _zero_point_rows(zero, bits, w, xq, a, out, task, tokens):
    """Q4_0 (zero = 8: nibbles) and Q8_0 (zero = 128: bytes): d * (q - zero) per value."""
    (quants, d), (scale, sums16, _) = w, a
    block_bytes = 512 if zero == 128 else 256
    acc = np.empty((tokens, 16), np.float32)
    for g in groups_of(task, quants):
        acc[:] = 0
        for b in range(scale.shape[1]):
            o = block_bytes * b
            prefetch_ahead(quants[g], o, block_bytes)
            prefetch_ahead(d[g], 16 * b, 32)
            v = _bytes(quants[g], o) if zero == 128 else nibbles(quants[g], o)
            row_scale = load_f16(d[g], 16 * b)
            for t in range(tokens):
                s = dot(v, xq, t, 8 * b, bits) - splat_i32(zero * (sums16[t, 2 * b] + sums16[t, 2 * b + 1]))
                accumulate(acc, t, to_f32(s) * (row_scale * splat_f32(scale[t, b])))
        write_rows(acc, g, out)


@njit(inline="always")
def _q4_0_rows(w, xq, a, out, task, tokens):
    _zero_point_rows(8, 4, w, xq, a, out, task, tokens)


@njit(inline="always")
def _q8_0_rows(w, xq, a, out, task, tokens):
    _zero_point_rows(128, 8, w, xq, a, out, task, tokens)


@njit(inline="always")
def _q4_1_rows(w, xq, a, out, task, tokens):
    (quants, d, m), (scale, _, sums32) = w, a
    acc = np.empty((tokens, 16), np.float32)
    for g in groups_of(task, quants):
        acc[:] = 0
        for b in range(scale.shape[1]):
            prefetch_ahead(quants[g], 256 * b, 256)
            prefetch_ahead(d[g], 16 * b, 32)
            prefetch_ahead(m[g], 16 * b, 32)
            v = nibbles(quants[g], 256 * b)
            row_scale, row_min = load_f16(d[g], 16 * b), load_f16(m[g], 16 * b)
            for t in range(tokens):
                s = to_f32(dot(v, xq, t, 8 * b, 4)) * (row_scale * splat_f32(scale[t, b]))
                accumulate(acc, t, s + row_min * splat_f32(sums32[t, b]))
        write_rows(acc, g, out)


# The entry points, written out one by one on purpose: numba's on-disk cache knows a function by
# its qualified name and source line, so entry points made by one factory would share a cache
# entry, and one quant type's kernel could come back from the cache for another.
@njit(parallel=True, cache=True, nogil=True)
def q4_0_product(w, xq, a, out):
    each_task(_q4_0_rows, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q4_0_decode(w, xq, a, out):
    each_task_of_one(_q4_0_rows, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q8_0_product(w, xq, a, out):
    each_task(_q8_0_rows, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q8_0_decode(w, xq, a, out):
    each_task_of_one(_q8_0_rows, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q4_1_product(w, xq, a, out):
    each_task(_q4_1_rows, w, xq, a, out)


@njit(parallel=True, cache=True, nogil=True)
def q4_1_decode(w, xq, a, out):
    each_task_of_one(_q4_1_rows, w, xq, a, out)
