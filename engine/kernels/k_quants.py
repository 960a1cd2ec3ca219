"""Block decoders for llama.cpp's K-quants: Q4_K, Q5_K, Q6_K (256 values per block).

Each reads block `b` of row `r` of the raw GGUF bytes `w`, writes the integer quants to `q`
(int32[256]), the integer scale and min of each 16 values to `sc` and `mn` (int32[16]) and returns
the float32 (d, dmin) such that value_j = d * sc[j // 16] * q_j - dmin * mn[j // 16].
Q4_K and Q5_K scale 32 values at a time: both halves of a 32 get the same sc and mn.
"""
import numpy as np
from numba import njit

from .legacy_quants import f16_at


@njit(inline="always")
def _scales_6bit(w, r, o, sc, mn):
    """Q4_K/Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes at offset o."""
    for j in range(8):
        if j < 4:
            s = np.int32(w[r, o + j]) & 63
            m = np.int32(w[r, o + j + 4]) & 63
        else:
            s = (np.int32(w[r, o + j + 4]) & 15) | ((np.int32(w[r, o + j - 4]) >> 6) << 4)
            m = (np.int32(w[r, o + j + 4]) >> 4) | ((np.int32(w[r, o + j]) >> 6) << 4)
        sc[2 * j] = s
        sc[2 * j + 1] = s
        mn[2 * j] = m
        mn[2 * j + 1] = m


@njit(inline="always")
def decode_q4_k(w, r, b, f16, q, sc, mn):
    """144 bytes: fp16 d, fp16 dmin, 12 bytes of scales/mins, 128 bytes of nibbles: byte l of
    each 32-byte group c holds value 64c+l (low nibble) and 64c+32+l (high nibble)."""
    o = b * 144
    _scales_6bit(w, r, o + 4, sc, mn)
    for c in range(4):
        for l in range(32):
            byte = np.int32(w[r, o + 16 + 32 * c + l])
            q[64 * c + l] = byte & 15
            q[64 * c + 32 + l] = byte >> 4
    return f16_at(w, r, o, f16), f16_at(w, r, o + 2, f16)


@njit(inline="always")
def decode_q5_k(w, r, b, f16, q, sc, mn):
    """176 bytes: as Q4_K with 32 bytes of fifth bits (qh) before the nibbles: bit 2c of qh[l]
    tops value 64c+l, bit 2c+1 tops value 64c+32+l."""
    o = b * 176
    _scales_6bit(w, r, o + 4, sc, mn)
    for c in range(4):
        for l in range(32):
            byte = np.int32(w[r, o + 48 + 32 * c + l])
            high = np.int32(w[r, o + 16 + l])
            q[64 * c + l] = (byte & 15) | (((high >> (2 * c)) & 1) << 4)
            q[64 * c + 32 + l] = (byte >> 4) | (((high >> (2 * c + 1)) & 1) << 4)
    return f16_at(w, r, o, f16), f16_at(w, r, o + 2, f16)


@njit(inline="always")
def decode_q6_k(w, r, b, f16, q, sc, mn):
    """210 bytes: 128 bytes of low nibbles (ql), 64 bytes of 2-bit high parts (qh), 16 int8 scales,
    fp16 d. In each half h (128 values), for l < 32: ql[64h+l] and ql[64h+l+32] give the low
    nibbles of values l, l+32 (low) and l+64, l+96 (high); qh[32h+l] bits 0-1, 2-3, 4-5, 6-7 top
    values l, l+32, l+64, l+96. value = d * scale[j // 16] * (q - 32)."""
    o = b * 210
    for h in range(2):
        for l in range(32):
            lo = np.int32(w[r, o + 64 * h + l])
            hi = np.int32(w[r, o + 64 * h + l + 32])
            top = np.int32(w[r, o + 128 + 32 * h + l])
            q[128 * h + l] = ((lo & 15) | ((top & 3) << 4)) - 32
            q[128 * h + l + 32] = ((hi & 15) | (((top >> 2) & 3) << 4)) - 32
            q[128 * h + l + 64] = ((lo >> 4) | (((top >> 4) & 3) << 4)) - 32
            q[128 * h + l + 96] = ((hi >> 4) | (((top >> 6) & 3) << 4)) - 32
    for j in range(16):
        s = np.int32(w[r, o + 192 + j])
        sc[j] = s - 256 if s > 127 else s
        mn[j] = 0
    return f16_at(w, r, o + 208, f16), np.float32(0)
