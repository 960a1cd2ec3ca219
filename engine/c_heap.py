"""glibc's C heap: how many arenas threads spread it over, and handing its freed pages back.

Large numpy arrays are mapped and unmapped one by one, but glibc raises its mapping threshold
each time a large block is freed (up to 32 MB), after which such arrays come from the heap and
their pages stay resident when freed: repacking a 1B model's weights in a process that had run
compiled code before left 250 MB of freed heap resident.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8


def _glibc():
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Few heaps for the C allocations of every thread (glibc gives each thread its own, up to 8
    per core, and keeps their freed pages): a server that loaded and unloaded three models held
    180 MB more than before them with the default, 90 MB with two. Called before threads start."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)


def keep_step_memory(kept: int = 256 << 20) -> None:
    """Arrays up to 32 MB from the heap, and up to `kept` bytes of its freed pages kept for the
    next ones. A forward step allocates and frees its arrays afresh (a Mistral-shaped 128-token
    step: ~45 MB a layer); by default glibc handed the freed top of the heap back whenever it
    passed twice the largest array and faulted it in again on the next allocation: 8,700 page
    faults a step, 512 (the KV cache's) with this, and the step 3% faster (2 threads, Zen 4).
    Setting these turns glibc's adaptive thresholds off; release_freed_memory still hands every
    free page back (after a model unloads)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, kept)


def release_freed_memory() -> None:
    """Hands the C heap's free pages back to the system (after a model unloads: its tokenizer,
    grammar and step buffers, freed, stayed resident otherwise; after repacking a file)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
