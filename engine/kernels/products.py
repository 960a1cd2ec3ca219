"""Matrix products of GGUF weights with a batch of activations: out (n, rows) = x (n, k) @ W.T.

One loop per family, specialised for each tensor type by numba's literal dispatch (`literally`),
so each type compiles to its own straight-line code while the loops are written once:
- 32-value blocks (Q4_0, Q4_1, Q8_0) against Q8_0/Q8_1 activations,
- 256-value K-quants (Q4_K, Q5_K, Q6_K) against Q8_K activations,
- plain floats (F32, F16, BF16) against float activations.
Each row's integer block sums are exact and its float sums run in block order whatever the batch
size, so a token's output never depends on what else is in the batch. Rows run in parallel.
With one token the inner dot runs along the block; with several, across the tokens (the
activations are transposed so that loop is contiguous and vectorises).
"""
import numpy as np
from gguf import GGMLQuantizationType as T
from numba import literally, njit, prange

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


@njit(parallel=True, cache=True)
def _legacy_product(kind, w, xq, xqT, xd, xs, f16, out):
    """Per block: acc += (d_w * d_x) * sum(q_w * q_x); offsets: m_w * s_x (Q4_1 only)."""
    n, n_blocks = xd.shape
    for r in prange(w.shape[0]):
        q = np.empty(32, np.int32)
        isum = np.empty(n, np.int32)
        acc = np.zeros(n, np.float32)
        offsets = np.zeros(n, np.float32)
        for b in range(n_blocks):
            d, m = _legacy_block(kind, w, r, b, f16, q)
            if n == 1:
                s = np.int32(0)
                for j in range(32):
                    s += q[j] * np.int32(xq[0, 32 * b + j])
                isum[0] = s
            else:
                isum[:] = 0
                for j in range(32):
                    qj = q[j]
                    for t in range(n):
                        isum[t] += qj * np.int32(xqT[32 * b + j, t])
            for t in range(n):
                acc[t] += (d * xd[t, b]) * np.float32(isum[t])
                offsets[t] += m * xs[t, b]
        for t in range(n):
            out[t, r] = acc[t] + offsets[t]


@njit(parallel=True, cache=True)
def _kquant_product(kind, w, xq, xqT, xd, bsums, f16, out):
    """Per block: acc += (d_w * d_x) * sum_u sc_u * sum(q_w * q_x over the 16 values u);
    mins: -(dmin_w * d_x) * sum_u mn_u * bsum_u."""
    n, n_blocks = xd.shape
    for r in prange(w.shape[0]):
        q = np.empty(256, np.int32)
        sc = np.empty(16, np.int32)
        mn = np.empty(16, np.int32)
        isub = np.empty(n, np.int32)
        acc = np.zeros(n, np.float32)
        acc_mins = np.zeros(n, np.float32)
        for b in range(n_blocks):
            d, dmin = _kquant_block(kind, w, r, b, f16, q, sc, mn)
            if n == 1:
                total = np.int32(0)
                for u in range(16):
                    s = np.int32(0)
                    for j in range(16):
                        s += q[16 * u + j] * np.int32(xq[0, 256 * b + 16 * u + j])
                    total += sc[u] * s
                isub[0] = total
            else:
                isub[:] = 0
                for u in range(16):
                    for j in range(16):
                        qj = q[16 * u + j] * sc[u]
                        for t in range(n):
                            isub[t] += qj * np.int32(xqT[256 * b + 16 * u + j, t])
            for t in range(n):
                msum = np.int32(0)
                for u in range(16):
                    msum += mn[u] * bsums[t, 16 * b + u]
                acc[t] += (d * xd[t, b]) * np.float32(isub[t])
                acc_mins[t] += (-dmin * xd[t, b]) * np.float32(msum)
        for t in range(n):
            out[t, r] = acc[t] + acc_mins[t]


@njit(parallel=True, cache=True)
def _float_product(kind, w, x, f16, out):
    """w holds the raw bits of each weight (uint32 for F32, uint16 for F16 and BF16)."""
    n, k = x.shape
    for r in prange(w.shape[0]):
        row = np.empty(k, np.float32)
        bits = row.view(np.uint32)
        if kind == F32:
            for j in range(k):
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


@njit(cache=True)
def legacy_product(kind, w, xq, xqT, xd, xs, f16, out):
    _legacy_product(literally(kind), w, xq, xqT, xd, xs, f16, out)


@njit(cache=True)
def kquant_product(kind, w, xq, xqT, xd, bsums, f16, out):
    _kquant_product(literally(kind), w, xq, xqT, xd, bsums, f16, out)


@njit(cache=True)
def float_product(kind, w, x, f16, out):
    _float_product(literally(kind), w, x, f16, out)
