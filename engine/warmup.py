"""Compiling a model's kernels before its first request, on every core.

numba compiles a kernel on its first call, one kernel at a time (its compiler holds a lock and the
GIL): the default model's first answer spent ~17 s of one core compiling. Here the kernels a step
runs are split into as many parts as there are cores (for a server, as its compute threads): fresh
processes compile the other parts into numba's on-disk cache while this one compiles its own, then
a real step (a prompt of two tokens, then one decoded) loads what they wrote. With nothing in the
cache, the parts compile the parallel kernels' serial twins (kernels/serial.py: half the compile),
and one process compiles the parallel kernels in the background while the model serves on the
twins, then the products' one-token variants (layout.each_task_of_one, faster decoding, the same
results): until they are in, one-token products run the general kernels (DEFERRED_DECODE). Those
already in the cache load at once, in milliseconds: with the cache warm no process is started (a
restart's first answer came 0.5 s after it was ready while one loaded them, SmolLM2 on Zen 4; now
0.2 s).
tests/engine/test_warmup.py checks that a generation after it compiles nothing.

    python -m llamba.engine.warmup MODEL KV_TYPE PART PARTS   # one part of the twins, as Warmup runs it
    python -m llamba.engine.warmup MODEL KV_TYPE background   # the parallel and one-token kernels
"""
from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from contextlib import nullcontext
from typing import Callable

import numba
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from . import ops, python_heap
from .compute_lock import COMPUTE
from .config import ModelConfig
from .gguf_file import GGUFFile
from .kernels import (DEFERRED_DECODE, FLOAT_TYPES, K_QUANTS, QUANT_KERNELS, SUPPORTED_TYPES, Activations, Weight,
                      pack, product, serial)
from .kernels.isa import ACTIVATION_BITS
from .kv_cache import KVCache
from .loader import reading
from .model import GGUF_NAMES, Llama, Span

log = logging.getLogger("llamba")

# seconds, roughly, that a twin's fresh compile takes (Zen 4 core): what the parts are balanced by
# (a helper spends its first ~0.5-0.9 s starting, this process about as long loading the model)
ATTENTION_COST, PRODUCT_COST, QUANTIZE_COST, SMALL_COST = 2.8, 1.0, 0.8, 0.3


def stand_ins(f: GGUFFile, c: ModelConfig) -> tuple[list[Weight], np.ndarray]:
    """A small weight of each type the model's products read, and a norm weight, laid out and
    flagged (read-only, as from the packed file's map) as the model's: a kernel compiled for them
    is the one the model runs, and no weight need be loaded or repacked first."""
    roles = tuple(name.split("{i}")[1] for name in GGUF_NAMES.values() if "norm" not in name)
    output = "output.weight" if "output.weight" in f.tensors else "token_embd.weight"
    types = {t.type for name, t in f.tensors.items() if name.endswith(roles) or name == output}
    weights = []
    for ttype in sorted(types & set(SUPPORTED_TYPES)):
        rows, k = 16, 256
        if ttype in FLOAT_TYPES:
            raw = np.zeros((rows, k), np.float32 if ttype == T.F32 else np.uint16)
        else:
            block_values, block_bytes = GGML_QUANT_SIZES[ttype]
            raw = np.zeros((rows, k // block_values * block_bytes), np.uint8)
        weight = pack(f"stand-in {ttype.name}", ttype, (rows, k), raw)
        for array in weight.arrays:
            array.setflags(write=False)
        weights.append(weight)
    norm = np.zeros(c.dim, np.float32)
    norm.setflags(write=False)
    return weights, norm


def kernel_calls(c: ModelConfig, weights: list[Weight], norm: np.ndarray,
                 kv_type: str) -> list[tuple[float, Callable[[], None]]]:
    """(cost, call) for each kernel a step of this model runs, each call on small arguments of the
    types a step passes (numba compiles once per argument types)."""
    x = np.zeros((2, c.dim), np.float32)

    def matmul_call(weight: Weight) -> Callable[[], None]:
        def call():
            a = Activations(np.zeros((2, weight.shape[1]), np.float32))
            kernel, args = product(weight, a, np.empty((2, weight.shape[0]), np.float32))
            kernel(*args)
        return call

    def attention():
        cache = KVCache(c, ops.TILE, 1, kv_type)
        q = np.zeros((2, c.n_heads, c.head_dim), np.float32)
        slots, positions = np.zeros(2, np.int64), np.arange(2)
        cache.claim(0, 0, 2)
        blocks, heads_per_job = ops.attention_jobs(slots, positions, c.n_heads, c.n_kv_heads, 2)
        serial.threaded(ops.attention)(q, *cache.layer(0), slots, positions, blocks, heads_per_job,
                                       np.empty_like(q), 1.0, 0)

    def rope():
        cos, sin = ops.rope_tables(np.arange(2), c.rope_dim or c.head_dim, c.rope_base, None)
        ops.apply_rope(np.zeros((2, c.n_heads, c.head_dim), np.float32), cos, sin, c.family.rope_halves)

    return [(SMALL_COST, lambda: ops.rmsnorm(x, norm, c.rms_eps)),  # first: the cheapest, and serial
            (ATTENTION_COST, attention),
            *[(PRODUCT_COST, matmul_call(weight)) for weight in weights],
            *[(QUANTIZE_COST, lambda block=block: Activations(x).quantized(block)) for block in activation_blocks(weights)],
            (SMALL_COST, rope),
            (SMALL_COST, lambda: serial.threaded(ops.swiglu)(swiglu_input(c)))]  # last: see Warmup.start


def swiglu_input(c: ModelConfig) -> np.ndarray:
    """What kernel_calls runs SwiGLU on: also what Warmup.start asks numba's cache about."""
    return np.zeros((2, 2 * c.ffn_dim), np.float32)


def one_token_kernels(weights: list[Weight]) -> list[tuple[T, Callable, tuple]]:
    """(type, kernel, arguments) for each one-token product kernel of these weights that this
    process has not loaded yet: a model of the same types loaded before has them in use, and a
    second model's warm-up must neither put them back on the general kernels nor start a process
    for them."""
    kernels = []
    for weight in weights:
        if weight.type in QUANT_KERNELS:
            kernel = QUANT_KERNELS[weight.type][2]
            _, args = product(weight, Activations(np.zeros((1, weight.shape[1]), np.float32)),
                              np.empty((1, weight.shape[0]), np.float32))
            if signature(args) not in kernel.overloads:
                kernels.append((weight.type, kernel, args))
    return kernels


def signature(args: tuple) -> tuple:
    return tuple(numba.typeof(arg) for arg in args)


def in_cache(kernel, args: tuple) -> bool:
    """Whether numba's on-disk cache holds `kernel` compiled for these arguments (read from there
    in milliseconds; compiled, in seconds). Asks the cache as a call would, without compiling."""
    return kernel._cache.load_overload(signature(args), kernel.targetctx) is not None


def activation_blocks(weights: list[Weight]) -> list[int]:
    """The activation formats these weights read (8 bits: per 32 values, and per 256 for
    K-quants; a single one at 16 bits)."""
    blocks = {256 if wt.type in K_QUANTS else 32 for wt in weights if wt.type in QUANT_KERNELS}
    return sorted(blocks) if ACTIVATION_BITS == 8 else sorted(blocks)[:1]


def part(calls: list[tuple[int, Callable[[], None]]], index: int, parts: int) -> list[Callable[[], None]]:
    """The calls of one part (part 0 runs here, the others in helper processes), the costliest
    first, each to the part with the least so far."""
    load, mine = [0.0] * parts, []
    for cost, call in sorted(calls, key=lambda pair: -pair[0]):
        least = load.index(min(load))
        load[least] += cost
        if least == index:
            mine.append(call)
    return mine


class Warmup:
    """The compilation of one model file's kernels: `start` sets the helper processes going (before
    the model is loaded: they need only its header), `run` compiles this process's part in the
    thread that will run the model, `poll` puts the parallel and one-token kernels in use once the
    background process has compiled them."""

    def __init__(self, path: str | Path, kv_type: str, parts: int | None = None):
        with reading(Path(path), "model"):
            f = GGUFFile(path)
            self.config = ModelConfig.from_gguf(f)
            self.weights, self.norm = stand_ins(f, self.config)
        self.path, self.kv_type, self.parts = Path(path), kv_type, parts or os.cpu_count() or 1
        self.calls = kernel_calls(self.config, self.weights, self.norm, kv_type)
        self.helpers: list[subprocess.Popen] = []
        self.cold = True  # the parallel kernels not in numba's cache (or another model's still compiling)
        self.background: subprocess.Popen | None = None  # compiling the parallel and one-token kernels
        self.deferred: set[T] = set()

    def start(self) -> None:
        """Start the helpers, unless numba's cache holds the parallel kernels (the background
        process compiles them in the order of the calls, SwiGLU's last: with it in, all are), and
        have steps run the twins until they are in (as they do while another model's are coming)."""
        self.cold = not in_cache(ops.swiglu, (swiglu_input(self.config),)) or bool(serial.waiting)
        if self.cold:
            serial.waiting.add(self)
            self.helpers = [self.helper(str(i), str(self.parts)) for i in range(1, self.parts)]

    def run(self, model: Llama) -> float:
        """Compile (or load) this process's part of the kernels a step runs, wait for the helpers,
        load the one-token ones in the cache and start compiling the others, then run a short real
        step of `model` that finds its kernels compiled. Returns the seconds it took."""
        start = time.perf_counter()
        # cached kernels load and run in turn with other models' steps; compiling them (seconds
        # each, mostly on one thread) does not hold those steps up
        turns = nullcontext() if self.cold else COMPUTE
        with python_heap.paused():
            for call in part(self.calls, 0, self.parts) if self.cold else [call for _, call in self.calls]:
                with turns:
                    call()
        for helper in self.helpers:  # a helper that fails costs only time: the step below compiles what it lacks
            helper.wait()
        # the one-token kernels: loaded here if an earlier start's process compiled them (a start
        # stopped too soon leaves some out), else compiled in that process after the model is ready
        for _, kernel, args in [] if self.cold else one_token_kernels(self.weights):
            if in_cache(kernel, args):
                with turns:
                    kernel(*args)
        self.deferred = {ttype for ttype, _, _ in one_token_kernels(self.weights)} - DEFERRED_DECODE
        DEFERRED_DECODE.update(self.deferred)
        if self.cold or self.deferred:
            self.background = self.helper("background")
        cache = KVCache(model.config, ops.TILE, 1, self.kv_type)
        with turns:
            model.step([Span(0, 0, [0, 0])], cache)
        with turns:
            model.step([Span(0, 2, [0])], cache)
        return time.perf_counter() - start

    def poll(self) -> bool:
        """Whether every kernel is in use; once the background process is done, loads the parallel
        and one-token kernels (from the cache it wrote; compiling here if it failed) and puts them
        in use."""
        if self.background is not None:
            if self.background.poll() is None:
                return False
            with COMPUTE, serial.parallel_here():
                for _, call in self.calls if self.cold else []:
                    call()
                for ttype, kernel, args in one_token_kernels(self.weights):
                    if ttype in self.deferred:
                        kernel(*args)
                DEFERRED_DECODE.difference_update(self.deferred)
            log.info("%s: parallel and one-token kernels compiled, in use (%s)", self.path.name,
                     ", ".join(sorted(t.name for t in self.deferred)))
        self._done()  # (also when `run` failed before the background process started)
        return True

    def close(self) -> None:
        """Stop compiling in the background (the model is shutting down)."""
        if self.background is not None:
            self.background.kill()
            self.background.wait()
        self._done()

    def _done(self) -> None:
        self.background = None
        serial.waiting.discard(self)

    def helper(self, *what: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", __spec__.name, str(self.path), self.kv_type, *what],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "LLAMBA_WARMUP_PARENT": str(os.getpid())})


def die_with_parent() -> None:
    """A helper stops when the thread that started it ends, however it ends (Linux; elsewhere the
    server's shutdown stops it)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        return
    if os.getppid() != int(os.environ.get("LLAMBA_WARMUP_PARENT", os.getppid())):
        sys.exit(0)  # it ended already


if __name__ == "__main__":
    die_with_parent()
    gc.disable()  # it only compiles, for seconds, and ends: no collections (python_heap.py)
    warmup = Warmup(sys.argv[1], sys.argv[2])
    if sys.argv[3] == "background":  # while the server serves: after its requests
        os.nice(10)
        mine = [call for _, call in warmup.calls] + [lambda kernel=kernel, args=args: kernel(*args)
                                                       for _, kernel, args in one_token_kernels(warmup.weights)]
    else:  # a part of a cold start's: the twins
        serial.waiting.add(warmup)
        mine = part(warmup.calls, int(sys.argv[3]), int(sys.argv[4]))
    for call in mine:
        call()
