"""Row wideners for the plain float types F16 and BF16 (F32 needs none)."""
import numpy as np
from numba import njit


@njit(inline="always")
def widen_f16(w, r, f16, row):
    """F16 weights, passed as their raw uint16 bits: widened through the 65536-entry table."""
    for j in range(row.shape[0]):
        row[j] = f16[w[r, j]]


@njit(inline="always")
def widen_bf16(w, r, bits):
    """BF16 weights, raw uint16: the top half of a float32; `bits` is the float32 row as uint32."""
    for j in range(bits.shape[0]):
        bits[j] = np.uint32(w[r, j]) << np.uint32(16)
