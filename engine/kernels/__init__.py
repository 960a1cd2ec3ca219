"""Matrix products over GGUF tensors: `matmul(weight, x)` for every supported tensor type."""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T

from ..gguf_file import Tensor
from .products import F16_TABLE, float_product, kquant_product, legacy_product

LEGACY_TYPES = (T.Q4_0, T.Q4_1, T.Q8_0)
KQUANT_TYPES = (T.Q4_K, T.Q5_K, T.Q6_K)
FLOAT_TYPES = (T.F32, T.F16, T.BF16)
SUPPORTED_TYPES = LEGACY_TYPES + KQUANT_TYPES + FLOAT_TYPES


class Activations:
    """A batch of activations x (n, k) with what the quantized kernels read besides it: x
    transposed (k, n) for the batched loops, and the sums of each 16 values (n, k // 16) for
    the blocks' offset terms. Made once and shared by every weight that reads the same input."""

    def __init__(self, x: np.ndarray):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        n, k = self.x.shape
        self.xT = np.ascontiguousarray(self.x.T) if n > 1 else self.x.reshape(k, 1)
        self.sums16 = self.x.reshape(n, k // 16, 16).sum(axis=-1) if k % 16 == 0 else None


def matmul(weight: Tensor, x: np.ndarray | Activations) -> np.ndarray:
    """(n, k) activations times a (rows, k) weight -> (n, rows) float32."""
    a = x if isinstance(x, Activations) else Activations(x)
    n, k = a.x.shape
    if weight.shape[-1] != k:
        raise ValueError(f"{weight.name}: expects inputs of width {weight.shape[-1]}, got {k}")
    out = np.empty((n, weight.shape[0]), np.float32)
    if weight.type in LEGACY_TYPES:
        legacy_product(int(weight.type), weight.data, a.x, a.xT, a.sums16, F16_TABLE, out)
    elif weight.type in KQUANT_TYPES:
        kquant_product(int(weight.type), weight.data, a.x, a.xT, a.sums16, F16_TABLE, out)
    elif weight.type in FLOAT_TYPES:
        bits = weight.data.view(np.uint32 if weight.type == T.F32 else np.uint16)
        float_product(int(weight.type), bits, a.x, F16_TABLE, out)
    else:
        raise ValueError(f"{weight.name}: tensor type {weight.type.name} is not supported")
    return out


def matvec(weight: Tensor, x: np.ndarray) -> np.ndarray:
    """(k,) times a (rows, k) weight -> (rows,): `matmul` with a batch of one."""
    return matmul(weight, x[None, :])[0]
