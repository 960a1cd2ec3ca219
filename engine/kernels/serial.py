"""Serial twins of the parallel kernels: the first answer after a fresh install, sooner.

numba compiles a kernel with a parallel loop (prange) in about twice the time of the same code as
a plain loop: its parfor passes, then the loop's body optimized and emitted again for the threads'
entry (SmolLM2's step kernels on one Zen 4 core: 10.8 s parallel, 4.8 s plain; attention 5.1 s
and 2.0 s). A twin is the same function compiled without `parallel`, its prange a plain range on
the calling thread. With nothing in numba's cache, warm-up compiles the twins, the model answers
on them (one thread) while one process compiles the parallel kernels in the background, and
those take over once they are in (warmup.py). A twin does each task's arithmetic in the same
order as its kernel, so the results are the same bit for bit (tests/engine/test_serial.py).
"""
from __future__ import annotations

import threading
import types
from contextlib import contextmanager

from numba import jit

waiting: set = set()  # warm-ups whose parallel kernels are still compiling: until none is, steps run twins
_twins: dict = {}
_here = threading.local()


def twin(kernel):
    """`kernel` (a parallel numba dispatcher) compiled without threads, under a name of its own:
    numba's on-disk cache knows a function by its qualified name and line."""
    if kernel not in _twins:
        f = kernel.py_func
        plain = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        plain.__qualname__ = f"{f.__qualname__}_serial"
        options = {k: v for k, v in kernel.targetoptions.items() if k != "parallel"}
        _twins[kernel] = jit(cache=True, **options)(plain)
    return _twins[kernel]


def threaded(kernel):
    """The kernel to call now: its twin while parallel kernels are compiling (in this thread, unless
    it is loading them: `parallel_here`)."""
    return twin(kernel) if waiting and not getattr(_here, "parallel", False) else kernel


@contextmanager
def parallel_here():
    """The parallel kernels in this thread, waiting or not (to load them)."""
    _here.parallel = True
    try:
        yield
    finally:
        _here.parallel = False
