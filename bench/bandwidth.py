"""The machine's memory bandwidth, and the share of it a decode figure reaches.

    python -m bench.bandwidth [THREADS ...]

Decoding one token reads every weight once (all but the token embeddings, of which it reads one
row, unless they are also the output matrix), so at its best it runs at bandwidth / weight bytes
tokens a second. `bench` prints each decode figure as the fraction of that it reaches. The
bandwidth is STREAM's triad, a[i] = b[i] + s c[i], over three float32 arrays of 256 MB each (far
past any cache), counted as three arrays moved; the median of 5.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

ARRAY_BYTES = 256 << 20


@njit(parallel=True, cache=True)
def triad(a, b, c, s):
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


def bandwidth_gbs(threads: int, repeats: int = 5) -> float:
    """Triad GB/s (10^9 bytes a second) on `threads` threads."""
    n = ARRAY_BYTES // 4
    a, b, c = np.zeros(n, np.float32), np.ones(n, np.float32), np.full(n, 2, np.float32)
    numba.set_num_threads(threads)
    triad(a, b, c, np.float32(3))  # compiled, and every page touched
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        triad(a, b, c, np.float32(3))
        seconds.append(time.perf_counter() - start)
    return 3 * a.nbytes / statistics.median(seconds) / 1e9


def weight_bytes_per_token(path: Path) -> int:
    """The bytes of weights one decoding step reads."""
    from llamba.engine.gguf_file import GGUFFile
    tensors = GGUFFile(path).tensors
    tied = "output.weight" not in tensors
    return sum(t.data.nbytes for name, t in tensors.items() if tied or name != "token_embd.weight")


if __name__ == "__main__":
    for t in map(int, sys.argv[1:] or ["1", "2"]):
        print(f"{t} thread(s): triad {bandwidth_gbs(t):.1f} GB/s")
