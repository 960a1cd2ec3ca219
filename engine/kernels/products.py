"""Matrix products of GGUF weights with a batch of float activations: out (n, rows) = x @ W.T.

Weights stay in their GGUF blocks and are decoded block by block on the fly; activations stay in
float32, so results follow an exact (float64) computation to float32 rounding rather than
llama.cpp's 8-bit activation rounding. One loop per family; `kind` (the GGML type number) picks
the block decoder, a branch per block that the CPU predicts perfectly:
- 32-value blocks (Q4_0, Q4_1, Q8_0): value = d * q + m,
- 256-value K-quants (Q4_K, Q5_K, Q6_K): value = d * sc[j // 16] * q - dmin * mn[j // 16],
- plain floats (F32, F16, BF16).
Every row's sums run in the same order whatever the batch size, so a token's output is bit for bit
the same alone or in a batch. With one token the inner dot runs along the block; with several,
across the tokens (the activations are transposed so that loop is contiguous).
"""
import numpy as np
from gguf import GGMLQuantizationType as T
from numba import njit, prange

from .float_types import widen_bf16, widen_f16
from .k_quants import decode_q4_k, decode_q5_k, decode_q6_k
from .legacy_quants import decode_q4_0, decode_q4_1, decode_q8_0

Q4_0, Q4_1, Q8_0 = int(T.Q4_0), int(T.Q4_1), int(T.Q8_0)
Q4_K, Q5_K, Q6_K = int(T.Q4_K), int(T.Q5_K), int(T.Q6_K)
F32, F16, BF16 = int(T.F32), int(T.F16), int(T.BF16)

# fp16 -> float32 for every bit pattern, as ggml's own lookup table.
F16_TABLE = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)


@njit(inline="always")
def _legacy_block(kind, w, r, b, f16, q):
    if kind == Q4_0:
        return decode_q4_0(w, r, b, f16, q)
    elif kind == Q4_1:
        return decode_q4_1(w, r, b, f16, q)
    else:
        return decode_q8_0(w, r, b, f16, q)


@njit(inline="always")
def _kquant_block(kind, w, r, b, f16, q, sc, mn):
    if kind == Q4_K:
        return decode_q4_k(w, r, b, f16, q, sc, mn)
    elif kind == Q5_K:
        return decode_q5_k(w, r, b, f16, q, sc, mn)
    else:
        return decode_q6_k(w, r, b, f16, q, sc, mn)


@njit(inline="always")
def _dot_quants(q, q0, length, x, xT, x0, dots):
    """dots[t] = sum_j q[q0 + j] * x[t, x0 + j] for j < length, summed in j order."""
    n = dots.shape[0]
    if n == 1:
        s = np.float32(0)
        for j in range(length):
            s += np.float32(q[q0 + j]) * x[0, x0 + j]
        dots[0] = s
    else:
        dots[:] = 0
        for j in range(length):
            qj = np.float32(q[q0 + j])
            for t in range(n):
                dots[t] += qj * xT[x0 + j, t]


@njit(parallel=True, cache=True)
def legacy_product(kind, w, x, xT, sums16, f16, out):
    """Per block b: d * sum_j q_j x_j + m * sum_j x_j (the sum of x from its two 16-value halves)."""
    n = x.shape[0]
    for r in prange(w.shape[0]):
        q = np.empty(32, np.int32)
        dots = np.empty(n, np.float32)
        acc = np.zeros(n, np.float32)
        for b in range(x.shape[1] // 32):
            d, m = _legacy_block(kind, w, r, b, f16, q)
            _dot_quants(q, 0, 32, x, xT, 32 * b, dots)
            for t in range(n):
                acc[t] += d * dots[t] + m * (sums16[t, 2 * b] + sums16[t, 2 * b + 1])
        for t in range(n):
            out[t, r] = acc[t]


@njit(parallel=True, cache=True)
def kquant_product(kind, w, x, xT, sums16, f16, out):
    """Per block b: sum over its 16-value groups u of d * sc_u * sum_j q_j x_j - dmin * mn_u * sum_j x_j."""
    n = x.shape[0]
    for r in prange(w.shape[0]):
        q = np.empty(256, np.int32)
        sc = np.empty(16, np.int32)
        mn = np.empty(16, np.int32)
        dots = np.empty(n, np.float32)
        acc = np.zeros(n, np.float32)
        for b in range(x.shape[1] // 256):
            d, dmin = _kquant_block(kind, w, r, b, f16, q, sc, mn)
            for u in range(16):
                _dot_quants(q, 16 * u, 16, x, xT, 256 * b + 16 * u, dots)
                scale, offset = d * np.float32(sc[u]), dmin * np.float32(mn[u])
                for t in range(n):
                    acc[t] += scale * dots[t] - offset * sums16[t, 16 * b + u]
        for t in range(n):
            out[t, r] = acc[t]


@njit(parallel=True, cache=True)
def float_product(kind, w, x, f16, out):
    """w holds the raw bits of each weight (uint32 for F32, uint16 for F16 and BF16)."""
    n, k = x.shape
    for r in prange(w.shape[0]):
        row = np.empty(k, np.float32)
        bits = row.view(np.uint32)
        if kind == F32:
            for j in range(k):  # (a slice assignment here was miscompiled inside prange)
                bits[j] = w[r, j]
        elif kind == F16:
            widen_f16(w, r, f16, row)
        else:
            widen_bf16(w, r, bits)
        for t in range(n):
            s = np.float32(0)
            for j in range(k):
                s += row[j] * x[t, j]
            out[t, r] = s
