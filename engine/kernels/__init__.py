"""Matrix products of model weights with a batch of activations.

`pack` turns a GGUF tensor's raw bytes into a `Weight` laid out for its kernel (layout.py);
`matmul(weight, x)` multiplies. Quantized types run integer kernels over activations rounded to
8 bits as llama.cpp rounds them, or with LLAMBA_ACTIVATIONS=16 kept to ~16 bits (activations.py);
plain float types multiply in float32.
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
from .k_quants import (pack_q4_k, pack_q5_k, pack_q6_k, q4_k_decode, q4_k_product, q5_k_decode, q5_k_product,
                       q6_k_decode, q6_k_product)
from .layout import GROUP
from .legacy_quants import (pack_q4_0, pack_q4_1, pack_q5_0, pack_q5_1, pack_q8_0, q4_0_decode, q4_0_product,
                            q4_1_decode, q4_1_product, q5_0_decode, q5_0_product, q5_1_decode, q5_1_product,
                            q8_0_decode, q8_0_product)
from .serial import threaded

# quant type -> (the repacking of its GGUF bytes, the product kernel over the repacked arrays, the
# same for one token); every kernel is kernel(weight arrays, quantized activations, activation
# sums, out)
QUANT_KERNELS = {T.Q4_0: (pack_q4_0, q4_0_product, q4_0_decode), T.Q4_1: (pack_q4_1, q4_1_product, q4_1_decode),
                 T.Q5_0: (pack_q5_0, q5_0_product, q5_0_decode), T.Q5_1: (pack_q5_1, q5_1_product, q5_1_decode),
                 T.Q8_0: (pack_q8_0, q8_0_product, q8_0_decode), T.Q4_K: (pack_q4_k, q4_k_product, q4_k_decode),
                 T.Q5_K: (pack_q5_k, q5_k_product, q5_k_decode), T.Q6_K: (pack_q6_k, q6_k_product, q6_k_decode)}
# Types whose one-token kernel the server is still compiling (warmup.py): their one-token products
# run the general kernel meanwhile, which gives the same results bit for bit.
DEFERRED_DECODE: set[T] = set()
K_QUANTS = (T.Q4_K, T.Q5_K, T.Q6_K)  # 256-value blocks, which read 8-bit activations per 256 too
FLOAT_TYPES = (T.F32, T.F16, T.BF16)
SUPPORTED_TYPES = tuple(QUANT_KERNELS) + FLOAT_TYPES
# A kernel keeps each row group's per-token sums while it walks that group's blocks and every
# token's activations: past ~128 tokens they no longer stay in the core's caches, and a 512-token
# prompt ran 1.4x slower per token than 128-token pieces (1B Q4_0, Zen 4). Reading the weights
# once more per 128 tokens costs little beside that.
TOKENS_PER_CALL = 128

__all__ = ["Activations", "Weight", "isa", "pack", "matmul", "matvec", "product", "SUPPORTED_TYPES",
           "FLOAT_TYPES", "QUANT_KERNELS", "DEFERRED_DECODE"]


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
    if ttype not in QUANT_KERNELS:
        raise ValueError(f"{name}: tensor type {ttype.name} is not supported")
    if rows % GROUP or k % 256 and ttype in K_QUANTS:
        raise ValueError(f"{name}: shape {shape} does not fit {ttype.name} kernels (rows % {GROUP})")
    return Weight(name, ttype, shape, QUANT_KERNELS[ttype][0](raw.reshape(rows, -1)))


def matmul(weight: Weight, x: np.ndarray | Activations) -> np.ndarray:
    """(n, k) activations times a (rows, k) weight -> (n, rows) float32."""
    a = x if isinstance(x, Activations) else Activations(x)
    n, k = a.shape
    if weight.shape[1] != k:
        raise ValueError(f"{weight.name}: expects inputs of width {weight.shape[1]}, got {k}")
    out = np.empty((n, weight.shape[0]), np.float32)
    for t0 in range(0, n, TOKENS_PER_CALL):
        kernel, args = product(weight, a, out, slice(t0, t0 + TOKENS_PER_CALL) if n > TOKENS_PER_CALL else None)
        kernel(*args)
    return out


def product(weight: Weight, a: Activations, out: np.ndarray, tokens: slice | None = None) -> tuple[Callable, tuple]:
    """The kernel that multiplies `weight` by these tokens of `a` into theirs of `out` (None: all of
    them, as they are: a decode step's 121 products spent ~2 us each making views), and its
    arguments (the first axis of every array is the token)."""
    if tokens is not None:
        out = out[tokens]
    if weight.type in FLOAT_TYPES:
        x = a.x if tokens is None else a.x[tokens]
        return threaded(float_product), (int(weight.type), weight.arrays[0], x, F16_TABLE, out)
    quantized, sums = a.quantized(256 if weight.type in K_QUANTS else 32)
    if tokens is not None:
        quantized, sums = tuple(q[tokens] for q in quantized), tuple(s[tokens] for s in sums)
    _, general, one_token = QUANT_KERNELS[weight.type]
    one = out.shape[0] == 1 and weight.type not in DEFERRED_DECODE
    return one_token if one else threaded(general), (weight.arrays, quantized, sums, out)


def matvec(weight: Weight, x: np.ndarray) -> np.ndarray:
    """(k,) times a (rows, k) weight -> (rows,): `matmul` with a batch of one."""
    return matmul(weight, x[None, :])[0]
