"""Activations quantized to 8-bit blocks before a quantized product, exactly as llama.cpp does.

Plain numpy: this touches n x k floats, a sliver of the cost of the product that follows.
llama.cpp's x86 quantizers compute in float32 and round half to even (`_mm256_round_ps`,
`nearest_int`), which `np.rint` on float32 reproduces.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def round_to_f16(x: np.ndarray) -> np.ndarray:
    """llama.cpp stores these scales as fp16; the product then widens them back."""
    return x.astype(np.float16).astype(np.float32)


@dataclass
class Q8Blocks:
    """Activations as int8 blocks. q: (n, k) int8; qT: (k, n) the same, transposed for the batched
    kernels; d: (n, k // block) float32 scale; s: per-block extra, see the quantizers."""
    q: np.ndarray
    qT: np.ndarray
    d: np.ndarray
    s: np.ndarray


def quantize_q8_1(x: np.ndarray) -> Q8Blocks:
    """llama.cpp's Q8_0 and Q8_1 (32 values per block): d = amax/127 stored as fp16, q = round(x*127/amax).
    s = fp16(d * sum(q)) is Q8_1's extra (for Q4_1's offset term); Q4_0 and Q8_0 ignore it."""
    n, k = x.shape
    blocks = x.reshape(n, k // 32, 32).astype(np.float32, copy=False)
    amax = np.abs(blocks).max(axis=-1)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint(blocks * inv[..., None]).astype(np.int8)
    s = round_to_f16(d * q.sum(axis=-1, dtype=np.int32).astype(np.float32))
    q = q.reshape(n, k)
    return Q8Blocks(q, np.ascontiguousarray(q.T), round_to_f16(d), s)


def quantize_q8_k(x: np.ndarray) -> Q8Blocks:
    """llama.cpp's Q8_K (256 values per block, for K-quant weights): scale from the signed value of
    largest magnitude, iscale = -127/max, q = min(127, round(iscale*x)), d = 1/iscale in float32.
    s holds the sums of q over each 16 values (`bsums`), for the K-quants' offset terms."""
    n, k = x.shape
    blocks = x.reshape(n, k // 256, 256).astype(np.float32, copy=False)
    peak = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=-1)[..., None], axis=-1)[..., 0]
    with np.errstate(divide="ignore"):
        iscale = np.where(peak != 0, np.float32(-127) / peak, np.float32(0)).astype(np.float32)
        d = np.where(peak != 0, np.float32(1) / iscale, np.float32(0)).astype(np.float32)
    q = np.minimum(127, np.rint(blocks * iscale[..., None])).astype(np.int8)
    bsums = q.reshape(n, k // 16, 16).sum(axis=-1, dtype=np.int32)
    q = q.reshape(n, k)
    return Q8Blocks(q, np.ascontiguousarray(q.T), d, bsums)
