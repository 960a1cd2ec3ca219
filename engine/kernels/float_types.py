"""Row wideners for the plain float types F32, F16 and BF16, and the rounding llama.cpp applies
to activations before a product with them (it converts x to the weight's type first)."""
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


def round_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even) and widen back, as ggml's fp32->bf16 does."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)
