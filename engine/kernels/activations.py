"""Activations as the integer kernels read them: each 32-value block of x in 16 bits, split in two
int8 halves so that byte dot products can multiply them.

llama.cpp rounds activations to int8 (relative error ~4e-3 per value) before every quantized
product. We keep ~16 bits instead: x ~= scale * (256 * hi + lo), with hi = round(x / d),
lo = round(256 * (x / d - hi)) and d = max|x| / 127 over the block, both in [-127, 127]. Every
product is then two exact integer dot products (hi and lo) per block, and the results follow an
exact float computation to ~2e-5, not llama.cpp's 8-bit rounding.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def quantize_rows(x, hi, lo, even, odd, scale, sums16, sums32):
    """x (n, k) float32 -> hi, lo (n, k) int8; scale (n, k/32) float32 such that a value is
    scale * (256 hi + lo); even, odd (n, k/2) int16: 256 hi + lo of values 4i, 4i + 2 and of
    4i + 1, 4i + 3 (for 16-bit products, dot.py); sums16 (n, k/16) int32: sum of 256 hi + lo over
    each 16 values (the kernels' zero-point terms); sums32 (n, k/32) float32: the exact sum of x
    over each 32."""
    n, k = x.shape
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
            for half in range(2):
                s = np.int32(0)
                for j in range(32 * b + 16 * half, 32 * b + 16 * half + 16):
                    v = x[t, j] * inverse
                    h = np.rint(v)
                    low = min(max(np.rint((v - h) * np.float32(256)), np.float32(-127)), np.float32(127))
                    hi[t, j], lo[t, j] = np.int8(h), np.int8(low)
                    a16 = np.int32(256) * np.int32(h) + np.int32(low)
                    pair = 2 * (j // 4) + (j % 4) // 2
                    if j % 2 == 0:
                        even[t, pair] = np.int16(a16)
                    else:
                        odd[t, pair] = np.int16(a16)
                    s += a16
                sums16[t, 2 * b + half] = s


class Activations:
    """A batch of activations (n, k), quantized once and shared by every weight that reads it.
    `quantized` holds hi, lo, even and odd as the kernels take them: as int32 (4 bytes or 2 int16
    each), the unit of a byte dot product."""

    def __init__(self, x: np.ndarray):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        n, k = self.x.shape
        hi, lo = np.empty((n, k), np.int8), np.empty((n, k), np.int8)
        even, odd = np.empty((n, k // 2), np.int16), np.empty((n, k // 2), np.int16)
        self.scale = np.empty((n, k // 32), np.float32)
        self.sums16 = np.empty((n, k // 16), np.int32)
        self.sums32 = np.empty((n, k // 32), np.float32)
        if k % 32 == 0:
            quantize_rows(self.x, hi, lo, even, odd, self.scale, self.sums16, self.sums32)
        self.quantized = tuple(a.view(np.int32) for a in (hi, lo, even, odd))

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape
