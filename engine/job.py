"""A request as a model runner (scheduler.py) holds it, and what the runner reports as it goes:
a `Job` (its prompts, sampling, `n` choices each, and the queue its events come back on), a full
queue's refusal, and the `Observer` the server turns into metrics."""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from .grammar import Constraint
from .sampling import SamplingParams


class QueueFull(Exception):
    """The model's queue holds as many waiting requests as it may."""


@dataclass(eq=False)
class Job:
    """One request: `n` choices for each of its prompts."""
    prompts: list[list[int]]
    params: SamplingParams
    n: int
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None
    constraint: Constraint | None = None  # its grammar, compiled once; each choice follows a copy
    cached_tokens: int = 0  # prompt tokens whose keys and values came from the prefix cache
    drafted_tokens: int = 0   # tokens its choices drafted (speculation.py)
    accepted_tokens: int = 0  # of those, the ones its choices generated
    pooling: str | None = None  # an embedding job's pooling (embeddings.py); None: a generation
    submitted: float = field(default_factory=time.monotonic)
    unfinished: int = 0     # choices not yet finished (set at admission)

    @property
    def choices(self) -> int:
        return len(self.prompts) * self.n

    @property
    def prompt_tokens(self) -> int:
        return sum(map(len, self.prompts))

    def cancel(self) -> None:
        self.cancelled.set()

    def _emit(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # the event loop that awaited this job has closed: nobody listens
            self.cancel()


class Observer:
    """What the runner reports as it goes (the server turns it into metrics). No-ops here."""

    def queue(self, running: int, waiting: int, busy_slots: int, kv_usage: float) -> None: ...
    def admitted(self, job: Job) -> None: ...
    def token(self, job: Job, seconds: float, first: bool) -> None: ...
    def drafted(self, job: Job, drafted: int, accepted: int) -> None: ...
    def rejected(self) -> None: ...
    def compiling(self, busy: bool) -> None: ...  # faster kernels compiling in the background (warmup.py)
