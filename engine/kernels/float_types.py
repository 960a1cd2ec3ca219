"""Products with plain float weights: F32, F16, BF16 (small tensors and unquantized models).

Each row is widened to float32 once, then dotted with every token in the same order whatever the
batch size. Weights come as their raw bits: uint32 for F32, uint16 for F16 and BF16.
"""
import numpy as np
from gguf import GGMLQuantizationType as T
from numba import njit, prange

F32, F16 = int(T.F32), int(T.F16)

# fp16 -> float32 for every bit pattern, as ggml's own lookup table (NaNs stay NaN, quietly).
with np.errstate(invalid="ignore"):
    F16_TABLE = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)


@njit(parallel=True, cache=True, nogil=True)
def float_product(kind, w, x, f16, out):
    n, k = x.shape
    xt = np.ascontiguousarray(x.T)  # (k, n): the tokens of one input column side by side
    for r in prange(w.shape[0]):
        row = np.empty(k, np.float32)
        bits = row.view(np.uint32)
        if kind == F32:
            for j in range(k):  # (a slice assignment here was miscompiled inside prange)
                bits[j] = w[r, j]
        elif kind == F16:
            for j in range(k):
                row[j] = f16[w[r, j]]
        else:  # BF16: the top half of a float32
            for j in range(k):
                bits[j] = np.uint32(w[r, j]) << np.uint32(16)
        # every token's sum runs over j in order, one lane per token: vectorized across the
        # batch, and each token's result the same whatever the batch
        sums = np.empty(n, np.float32)
        sums[:] = 0  # (not np.zeros: see ops.attention)
        for j in range(k):
            for t in range(n):
                sums[t] += row[j] * xt[j, t]
        for t in range(n):
            out[t, r] = sums[t]
