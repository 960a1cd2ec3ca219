"""Block decoders for llama.cpp's 32-value quant types: Q4_0, Q4_1, Q8_0.

Each reads block `b` of row `r` of the raw GGUF bytes `w` (rows, n_blocks * block_bytes), writes
the block's integer quants to `q` (int32[32]) and returns the float32 (scale, offset) such that
value_j = scale * q_j + offset. fp16 fields are widened through `f16`, a 65536-entry table.
"""
import numpy as np
from numba import njit


@njit(inline="always")
def f16_at(w, r, o, f16):
    return f16[np.int32(w[r, o]) | (np.int32(w[r, o + 1]) << 8)]


@njit(inline="always")
def decode_q4_0(w, r, b, f16, q):
    """18 bytes: fp16 d, then 16 bytes whose low nibbles are values 0-15 and high nibbles 16-31;
    value = d * (nibble - 8)."""
    o = b * 18
    for j in range(16):
        byte = np.int32(w[r, o + 2 + j])
        q[j] = (byte & 15) - 8
        q[j + 16] = (byte >> 4) - 8
    return f16_at(w, r, o, f16), np.float32(0)


@njit(inline="always")
def decode_q4_1(w, r, b, f16, q):
    """20 bytes: fp16 d, fp16 m, then nibbles as in Q4_0; value = d * nibble + m."""
    o = b * 20
    for j in range(16):
        byte = np.int32(w[r, o + 4 + j])
        q[j] = byte & 15
        q[j + 16] = byte >> 4
    return f16_at(w, r, o, f16), f16_at(w, r, o + 2, f16)


@njit(inline="always")
def decode_q8_0(w, r, b, f16, q):
    """34 bytes: fp16 d, then 32 int8; value = d * q."""
    o = b * 34
    for j in range(32):
        byte = np.int32(w[r, o + 2 + j])
        q[j] = byte - 256 if byte > 127 else byte
    return f16_at(w, r, o, f16), np.float32(0)
