"""Compiling a model's kernels before its first request, on every core.

numba compiles a kernel on its first call, one kernel at a time (its compiler holds a lock and the
GIL): the default model's first answer spent ~17 s of one core compiling. Here the kernels a step
runs are split into as many parts as there are cores (for a server, as its compute threads): fresh
processes compile the other parts into numba's on-disk cache while this one compiles its own, then
a real step (a prompt of two tokens, then one decoded) loads what they wrote. With the cache warm
no process is started. tests/engine/test_warmup.py checks that a generation after it compiles
nothing.

    python -m llamba.engine.warmup MODEL KV_TYPE PART PARTS   # one part, as compile_kernels runs it
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable

import numpy as np
from numba.core import event

from . import ops
from .kernels import Activations, Weight, product
from .kernels.isa import ACTIVATION_BITS
from .kv_cache import KVCache
from .model import Llama, Span

# compile time, roughly, of a parallel kernel against a serial one: what the parts are balanced by
PARALLEL_COST, SERIAL_COST = 5, 1


def kernel_calls(model: Llama, kv_type: str) -> list[tuple[int, Callable[[], None]]]:
    """(cost, call) for each kernel a step of this model runs, each call on small arguments of the
    types a step passes (numba compiles once per argument types)."""
    c, w = model.config, model.weights
    x = np.zeros((2, c.dim), np.float32)
    layer = w.layers[0]
    weights: dict[object, Weight] = {}  # one weight per kernel and activation block
    for weight in [p for lay in w.layers for p in (*lay.wqkv, lay.wo, *lay.w13, lay.w2)] + [w.output]:
        weights.setdefault(product_key(weight), weight)

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
        ops.attention(q, *cache.layer(0), cache.table, slots, positions, blocks, heads_per_job, np.empty_like(q))

    def rope():
        cos, sin = ops.rope_tables(np.arange(2), c.head_dim, c.rope_base, w.rope_freqs)
        ops.apply_rope(np.zeros((2, c.n_heads, c.head_dim), np.float32), cos, sin)

    return [(SERIAL_COST, lambda: ops.rmsnorm(x, layer.attn_norm, c.rms_eps)),  # first: the cheapest
            (PARALLEL_COST, attention),
            *[(PARALLEL_COST, matmul_call(weight)) for weight in weights.values()],
            *[(SERIAL_COST, lambda block=block: Activations(x).quantized(block)) for block in activation_blocks(weights)],
            (SERIAL_COST, rope),
            (SERIAL_COST, lambda: ops.swiglu(np.zeros((2, 2 * c.ffn_dim), np.float32)))]


def product_key(weight: Weight) -> tuple:
    """What decides a product's compiled kernel: its type, and its arrays' types."""
    return (weight.type, tuple((a.dtype, a.ndim, a.flags.writeable) for a in weight.arrays))


def activation_blocks(weights: dict[object, Weight]) -> list[int]:
    """The activation formats these weights read (a single one at 16 bits)."""
    from .kernels import K_QUANTS, QUANT_KERNELS
    blocks = {256 if wt.type in K_QUANTS else 32 for wt in weights.values() if wt.type in QUANT_KERNELS}
    return sorted(blocks) if ACTIVATION_BITS == 8 else sorted(blocks)[:1]


def part(calls: list[tuple[int, Callable[[], None]]], index: int, parts: int) -> list[Callable[[], None]]:
    """The calls of one part, the costliest first, each to the part with the least so far."""
    load, mine = [0] * parts, []
    for cost, call in sorted(calls, key=lambda pair: -pair[0]):
        least = load.index(min(load))
        load[least] += cost
        if least == index:
            mine.append(call)
    return mine


def compiles(call: Callable[[], None]) -> bool:
    """Whether running `call` made numba compile (its cache did not have the code)."""
    seen = []

    class Compiles(event.Listener):
        def on_start(self, ev):
            seen.append(ev)

        def on_end(self, ev):
            pass
    with event.install_listener("numba:compile", Compiles()):
        call()
    return bool(seen)


def compile_kernels(model: Llama, kv_type: str, parts: int | None = None) -> float:
    """Compile every kernel a step of this model runs, in `parts` processes at once (this one
    among them; default: one per core), then run a short real step that finds them all compiled.
    Returns the seconds it took."""
    start = time.perf_counter()
    calls = kernel_calls(model, kv_type)
    # the kernels are cached together (numba_cache.py): one found in the cache means all are
    parts = (parts or os.cpu_count() or 1) if compiles(calls[0][1]) else 1
    helpers = [subprocess.Popen([sys.executable, "-m", __spec__.name, str(model.file.path), kv_type, str(i),
                                 str(parts)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for i in range(1, parts)]
    for call in part(calls, 0, parts):
        call()
    for helper in helpers:  # a helper that fails costs only time: the step below compiles what it lacks
        helper.wait()
    cache = KVCache(model.config, ops.TILE, 1, kv_type)
    model.step([Span(0, 0, [0, 0])], cache)
    model.step([Span(0, 2, [0])], cache)
    return time.perf_counter() - start


if __name__ == "__main__":
    path, kv_type, index, parts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for call in part(kernel_calls(Llama(path), kv_type), index, parts):
        call()
