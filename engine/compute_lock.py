"""One model's step at a time in this process, granted in the order asked for.

Every step runs its kernels on all of numba's threads (one OpenMP team per calling thread). Two
models stepping at once on a machine of few cores run two teams on the same cores: each parallel
region then waits for threads the other team has preempted, and a step of 200 regions takes
several times as long (a stream's tokens stalled for 0.5-0.7 s while another model warmed up, on
2 vCPU). Taking turns step by step costs each model at most the other's step. A load's heavy parts
take turns too: repacking (every core) and building a vocabulary's tables (Python: each kernel of a
step beside it waits for the GIL after it returns, and the stream crawled at 3-5x its gaps).
"""
from __future__ import annotations

import collections
import threading


class FairLock:
    """A lock handed to its waiters first come, first served: `threading.Lock` is not fair, and a
    thread stepping in a loop would get it back at once, over and over, starving the others."""

    def __init__(self):
        self._guard = threading.Lock()
        self._waiters: collections.deque[threading.Lock] = collections.deque()
        self._held = False

    def __enter__(self) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder, which hands the lock over still held

    def __exit__(self, *exc) -> None:
        with self._guard:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


COMPUTE = FairLock()
