"""Activations as the integer kernels read them: each block of x rounded to integers and a scale.

8 bits (isa.ACTIVATION_BITS = 8, the default): llama.cpp's own rounding, reproduced exactly as its
x86 code does it (relative error ~4e-3 per value; the engine's results then stay as close to an
exact computation as llama.cpp's, which also carry its float16 KV cache and attention):
- weights in 32-value blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) read q8_0/q8_1: d = max|x| / 127 stored as
  float16, q = round-half-even(x * (127 / max|x|)), and (q8_1, for Q4_1's and Q5_1's min terms) the block's
  sum as float16(d * sum q);
- K-quants read q8_K over 256 values: with m the value of largest magnitude (the first such),
  q = min(127, round-half-even(x * (-127 / m))) and d = 1 / (-127 / m) in float32.

16 bits (LLAMBA_ACTIVATIONS=16, isa.py): x ~= scale * (256 * hi + lo), with hi = round(x / d),
lo = round(256 * (x / d - hi)) and d = max|x| / 127 over each 32-value block, both in [-127, 127].
Every product is then two exact integer dot products (hi and lo) per block, twice the multiplies,
and the results follow an exact float computation to ~2e-5.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .isa import ACTIVATION_BITS
from .simd import (f32_bits, f32_from_bits, load_f32, load_i8, max_lanes, min_lanes, splat_f32, store_rounded_i8,
                   sum_lanes)


@njit(inline="always")
def _even_odd(values, count, even, odd, t, at):
    """values[:count] (integers) into row t of even and odd (int16) from index `at`, as the 16-bit
    products read them (dot.py): values 4i, 4i + 2 in `even`, 4i + 1, 4i + 3 in `odd`. (A loop of
    its own: scattered in the rounding loop, the stores kept it from vectorizing, 10x slower.)"""
    for i in range(count // 4):
        even[t, at + 2 * i], even[t, at + 2 * i + 1] = np.int16(values[4 * i]), np.int16(values[4 * i + 2])
        odd[t, at + 2 * i], odd[t, at + 2 * i + 1] = np.int16(values[4 * i + 1]), np.int16(values[4 * i + 3])


@njit(inline="always")
def _store_block(t, b, a, even, odd, sums16):
    """Block b's 32 activations a (int32) of row t as the 16-bit products read them (_even_odd),
    and their sums over each 16."""
    _even_odd(a, 32, even, odd, t, 16 * b)
    sums16[t, 2 * b], sums16[t, 2 * b + 1] = a[:16].sum(), a[16:].sum()


@njit(cache=True, nogil=True)
def quantize_rows(x, hi, lo, even, odd, scale, sums16, sums32):
    """16 bits. x (n, k) float32 -> hi, lo (n, k) int8; scale (n, k/32) float32 such that a value
    is scale * (256 hi + lo); even, odd (n, k/2) int16: 256 hi + lo (_store_block); sums16
    (n, k/16) int32: sum of 256 hi + lo over each 16 values (the kernels' zero-point terms);
    sums32 (n, k/32) float32: the exact sum of x over each 32."""
    n, k = x.shape
    a = np.empty(32, np.int32)
    for t in range(n):
        for b in range(k // 32):
            amax = np.float32(0)
            total = np.float32(0)
            for j in range(32 * b, 32 * b + 32):
                amax = max(amax, abs(x[t, j]))
                total += x[t, j]
            sums32[t, b] = total
            inverse = np.float32(127) / amax if amax > 0 else np.float32(0)
            scale[t, b] = amax / np.float32(127 * 256)
            for j in range(32):
                v = x[t, 32 * b + j] * inverse
                h = np.rint(v)
                low = min(max(np.rint((v - h) * np.float32(256)), np.float32(-127)), np.float32(127))
                hi[t, 32 * b + j], lo[t, 32 * b + j] = np.int8(h), np.int8(low)
                a[j] = np.int32(256) * np.int32(h) + np.int32(low)
            _store_block(t, b, a, even, odd, sums16)


@njit(inline="always")
def to_f16(v):
    """v rounded to the nearest float16 (ties to even), as a float32: how llama.cpp stores
    q8_0/q8_1 scales and sums. In float32's bits (libm's frexp and ldexp, twice a block, were a
    fifth of the quantizer's time): from 2^-14 up, keeping 11 significant bits is rounding the mantissa's low 13 bits
    away; below, float16's subnormals have a fixed spacing of 2^-24; past 65504 it is infinite."""
    size = abs(v)
    if size < np.float32(2.0 ** -14):
        rounded = np.rint(size * np.float32(2.0 ** 24)) * np.float32(2.0 ** -24)
    else:
        bits = f32_bits(size)
        bits = (bits + np.uint32(0x0FFF) + ((bits >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
        rounded = f32_from_bits(bits)
        if rounded > np.float32(65504):
            rounded = np.float32(np.inf)
    return -rounded if v < 0 else rounded


@njit(cache=True, nogil=True)
def quantize_rows_8bit(x, block, hi, even, odd, scale, sums16, sums32):
    """8 bits, llama.cpp's q8_0/q8_1 (block 32) or q8_K (block 256). x (n, k) float32 -> hi (n, k)
    int8: q; even, odd: q (_even_odd); scale (n, k/32): each 32's d
    (q8_K's repeated over its 256); sums16 (n, k/16) int32: sum of q over each 16; sums32 (n, k/32):
    what the minimum terms read, q8_1's float16(d * sum q) or, for q8_K, d * sum q."""
    n, k = x.shape
    for t in range(n):
        row, q = x[t], hi[t]
        for b in range(k // block):
            o = block * b
            amax = np.float32(0)
            for j in range(o, o + block, 16):  # (16 at a time: one chain of scalar maxima was a third of the time)
                v = load_f32(row, j)
                amax = max(amax, max_lanes(v), -min_lanes(v))
            if block == 32:
                d_exact = amax / np.float32(127)
                inverse = np.float32(127) / amax if amax > 0 else np.float32(0)
                d = to_f16(d_exact)
            else:
                top = amax  # the first value of largest magnitude, with its sign
                for j in range(o, o + block):
                    if abs(row[j]) == amax:
                        top = row[j]
                        break
                inverse = np.float32(-127) / top if amax > 0 else np.float32(0)
                d = np.float32(1) / inverse if amax > 0 else np.float32(0)
                d_exact = d
            for j in range(o, o + block, 16):
                store_rounded_i8(q, j, load_f32(row, j) * splat_f32(inverse))
            for c in range(o // 32, (o + block) // 32):
                low, high = np.int32(sum_lanes(load_i8(q, 32 * c))), np.int32(sum_lanes(load_i8(q, 32 * c + 16)))
                sums16[t, 2 * c], sums16[t, 2 * c + 1] = low, high
                scale[t, c] = d
                total = d_exact * np.float32(low + high)
                sums32[t, c] = to_f16(total) if block == 32 else total
        _even_odd(q, k, even, odd, t, 0)


class Activations:
    """A batch of activations (n, k), quantized once per block format and shared by every weight
    that reads it."""

    def __init__(self, x: np.ndarray):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self._formats = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape

    def quantized(self, block: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """For weights in blocks of `block` values (32, or 256 for K-quants): hi, lo, even and odd
        as the kernels take them, as int32 (4 bytes or 2 int16 each, the unit of a byte dot
        product), and (scale, sums16, sums32). 16-bit activations are the same for every block."""
        key = block if ACTIVATION_BITS == 8 else 32
        if key not in self._formats:
            self._formats[key] = self._quantize(key)
        return self._formats[key]

    def _quantize(self, block: int):
        n, k = self.x.shape
        hi = np.empty((n, k), np.int8)
        lo = hi if ACTIVATION_BITS == 8 else np.empty((n, k), np.int8)  # 8 bits: never read
        even, odd = np.empty((n, k // 2), np.int16), np.empty((n, k // 2), np.int16)
        scale, sums32 = np.empty((n, k // 32), np.float32), np.empty((n, k // 32), np.float32)
        sums16 = np.empty((n, k // 16), np.int32)
        if k % block == 0:
            if ACTIVATION_BITS == 8:
                quantize_rows_8bit(self.x, block, hi, even, odd, scale, sums16, sums32)
            else:
                quantize_rows(self.x, hi, lo, even, odd, scale, sums16, sums32)
        hi32 = hi.view(np.int32)  # (written out: a generator of the four views took 3 us, per decode product)
        ints = (hi32, hi32 if lo is hi else lo.view(np.int32), even.view(np.int32), odd.view(np.int32))
        return ints, (scale, sums16, sums32)
