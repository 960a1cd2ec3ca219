"""Python's garbage collector at start-up, around compiling, and after a model loads or unloads.

A full collection walks every object the collector tracks. The server's imports, settings and app
make ~170k that live as long as the process, and while they were being made the collector walked
them again and again: ~0.25 s of a 1.3 s warm start (Zen 4). Numba's compiler makes and drops
object graphs at a great rate beside them: with no collections a model's kernels compiled 18%
faster (13.4 -> 11.0 s on one core, 90 MB more at the peak).
"""
from __future__ import annotations

import gc
from contextlib import contextmanager


def resume() -> None:
    """Once the server's app is built (`llamba` begins with the collector off, before any import),
    collections on, with everything start-up made set aside unwalked (gc.freeze) and not collected
    first: a pass over it all is what the pause saved, and imports leave a few hundred objects of
    garbage."""
    gc.freeze()
    gc.enable()


@contextmanager
def paused():
    """No collections while numba compiles kernels (seconds; loading them from its cache,
    milliseconds); the garbage goes at the next collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def settle(unload: bool = False) -> None:
    """Collects the garbage, then sets what lives on aside from the collector (gc.freeze): a model
    and the modules loaded with it are ~180k objects, which every full collection walked while
    holding the GIL, stalling every stream for 90-120 ms (once in 192 requests of 8 SmolLM2
    clients, Zen 4; none since); the collector now walks only what came after. Done after a load
    (walking only what came since the last freeze: 1-17 ms, not 80) and after an unload (`unload`:
    everything is walked again, so that the model's own objects can go)."""
    if unload:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
