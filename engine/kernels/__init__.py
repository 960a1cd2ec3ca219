"""Matrix products of model weights with a batch of activations.

`pack` turns a GGUF tensor's raw bytes into a `Weight` laid out for its kernel (layout.py);
`matmul(weight, x)` multiplies. Quantized types run integer kernels over activations kept to ~16
bits (activations.py); plain float types multiply in float32.
"""
from __future__ import annotations

from . import isa  # first: it chooses the CPU numba compiles for, before any kernel is compiled
from . import numba_cache  # noqa: F401  (before any kernel is defined)

from dataclasses import dataclass
from typing import Callable

import numpy as np
from gguf import GGMLQuantizationType as T

from .activations import Activations
from .float_types import F16_TABLE, float_product
from .k_quants import pack_q4_k, pack_q5_k, pack_q6_k, q4_k_product, q6_k_product
from .layout import GROUP
from .legacy_quants import pack_q4_0, pack_q4_1, pack_q8_0, q4_0_product, q4_1_product, q8_0_product

PACKERS = {T.Q4_0: pack_q4_0, T.Q4_1: pack_q4_1, T.Q8_0: pack_q8_0,
           T.Q4_K: pack_q4_k, T.Q5_K: pack_q5_k, T.Q6_K: pack_q6_k}
FLOAT_TYPES = (T.F32, T.F16, T.BF16)
SUPPORTED_TYPES = tuple(PACKERS) + FLOAT_TYPES
_NO_TOPS = np.empty((0, 0), np.uint8)

__all__ = ["Activations", "Weight", "isa", "pack", "matmul", "matvec", "product", "SUPPORTED_TYPES", "FLOAT_TYPES", "PACKERS"]


@dataclass
class Weight:
    """A (rows, k) weight in its kernel's layout: `arrays` as the kernel for `type` takes them."""
    name: str
    type: T
    shape: tuple[int, int]
    arrays: tuple[np.ndarray, ...]


def pack(name: str, ttype: T, shape: tuple[int, int], raw: np.ndarray) -> Weight:
    """A GGUF tensor's data (rows, bytes per row for quants; the values for floats) -> Weight."""
    rows, k = shape
    if ttype in FLOAT_TYPES:
        return Weight(name, ttype, shape, (raw.view(np.uint32 if ttype == T.F32 else np.uint16),))
    if ttype not in PACKERS:
        raise ValueError(f"{name}: tensor type {ttype.name} is not supported")
    if rows % GROUP or k % 256 and ttype in (T.Q4_K, T.Q5_K, T.Q6_K):
        raise ValueError(f"{name}: shape {shape} does not fit {ttype.name} kernels (rows % {GROUP})")
    return Weight(name, ttype, shape, PACKERS[ttype](raw.reshape(rows, -1)))


def matmul(weight: Weight, x: np.ndarray | Activations) -> np.ndarray:
    """(n, k) activations times a (rows, k) weight -> (n, rows) float32."""
    a = x if isinstance(x, Activations) else Activations(x)
    n, k = a.shape
    if weight.shape[1] != k:
        raise ValueError(f"{weight.name}: expects inputs of width {weight.shape[1]}, got {k}")
    out = np.empty((n, weight.shape[0]), np.float32)
    kernel, args = product(weight, a, out)
    kernel(*args)
    return out


def product(weight: Weight, a: Activations, out: np.ndarray) -> tuple[Callable, tuple]:
    """The kernel that multiplies `weight` by `a` into `out`, and its arguments."""
    w, t = weight.arrays, weight.type
    if t == T.Q4_0:
        return q4_0_product, (*w, a.quantized, a.scale, a.sums16, out)
    if t == T.Q8_0:
        return q8_0_product, (*w, a.quantized, a.scale, a.sums16, out)
    if t == T.Q4_1:
        return q4_1_product, (*w, a.quantized, a.scale, a.sums32, out)
    if t in (T.Q4_K, T.Q5_K):
        quants, tops, sc, mn, d, dmin = w if t == T.Q5_K else (w[0], _NO_TOPS, *w[1:])
        return q4_k_product, (quants, tops, sc, mn, d, dmin, a.quantized, a.scale, a.sums32, out)
    if t == T.Q6_K:
        return q6_k_product, (*w, a.quantized, a.scale, a.sums16, out)
    return float_product, (int(t), w[0], a.x, F16_TABLE, out)


def matvec(weight: Weight, x: np.ndarray) -> np.ndarray:
    """(k,) times a (rows, k) weight -> (rows,): `matmul` with a batch of one."""
    return matmul(weight, x[None, :])[0]
