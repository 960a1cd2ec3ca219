"""Quantized matrix products over GGUF tensors: `matmul(weight, x)` for any supported type.

Activations are prepared the way llama.cpp prepares them for each weight type (int8 blocks for
quantized weights, fp16/bf16 rounding for half-precision ones) once per `Activations` and reused
by every weight that reads them (Q, K and V read the same normed input).
"""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T

from ..gguf_file import Tensor
from .activations import quantize_q8_1, quantize_q8_k, round_to_f16
from .float_types import round_to_bf16
from .products import F16_TABLE, float_product, kquant_product, legacy_product

LEGACY_TYPES = (T.Q4_0, T.Q4_1, T.Q8_0)
KQUANT_TYPES = (T.Q4_K, T.Q5_K, T.Q6_K)
FLOAT_TYPES = (T.F32, T.F16, T.BF16)
SUPPORTED_TYPES = LEGACY_TYPES + KQUANT_TYPES + FLOAT_TYPES


class Activations:
    """A batch of activations x (n, k) and its forms for each weight family, made on first use."""

    def __init__(self, x: np.ndarray):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self._forms: dict = {}

    def form(self, ttype: T):
        key = T.Q8_0 if ttype in LEGACY_TYPES else ttype
        if key not in self._forms:
            if ttype in LEGACY_TYPES:
                self._forms[key] = quantize_q8_1(self.x)
            elif ttype in KQUANT_TYPES:
                self._forms[key] = quantize_q8_k(self.x)
            elif ttype == T.F16:
                self._forms[key] = round_to_f16(self.x)
            elif ttype == T.BF16:
                self._forms[key] = round_to_bf16(self.x)
            else:
                self._forms[key] = self.x
        return self._forms[key]


def matmul(weight: Tensor, x: np.ndarray | Activations) -> np.ndarray:
    """(n, k) activations times a (rows, k) weight -> (n, rows) float32."""
    acts = x if isinstance(x, Activations) else Activations(x)
    n, k = acts.x.shape
    if weight.shape[-1] != k:
        raise ValueError(f"{weight.name}: expects inputs of width {weight.shape[-1]}, got {k}")
    out = np.empty((n, weight.shape[0]), np.float32)
    a = acts.form(weight.type)
    if weight.type in LEGACY_TYPES:
        legacy_product(int(weight.type), weight.data, a.q, a.qT, a.d, a.s, F16_TABLE, out)
    elif weight.type in KQUANT_TYPES:
        kquant_product(int(weight.type), weight.data, a.q, a.qT, a.d, a.s, F16_TABLE, out)
    elif weight.type in FLOAT_TYPES:
        bits = weight.data.view(np.uint32 if weight.type == T.F32 else np.uint16)
        float_product(int(weight.type), bits, a, F16_TABLE, out)
    else:
        raise ValueError(f"{weight.name}: tensor type {weight.type.name} is not supported")
    return out


def matvec(weight: Tensor, x: np.ndarray) -> np.ndarray:
    """(k,) times a (rows, k) weight -> (rows,): `matmul` with a batch of one."""
    return matmul(weight, x[None, :])[0]
