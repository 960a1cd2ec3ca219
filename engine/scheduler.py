"""The owner of one loaded model: a compute thread that batches every running request into each
forward step (continuous batching), fed by a bounded FIFO queue.

Each step runs, as one batch, the next token of every decoding request plus chunks of the
prompts of newly admitted ones (up to `step_tokens` tokens), so every weight is read once per
step for all of them. Requests join between steps (up to `parallel` at a time) and leave as soon
as they finish or are cancelled. A token's result does not depend on its batch (see
engine/kernels), so a request gets the same tokens alone or among others.

The KV cache has a slot per running request plus `cache_slots` more. A finished request's slot
keeps its tokens' keys and values; a new request takes the free slot sharing the longest prefix
with its prompt (else the least recently used one) and computes only the rest. That is prefix
caching: a chat's next turn repeats the conversation and pays only for the new message.

The event loop never runs model maths: it submits requests and awaits their token events.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

from .generate import Sequence, TokenEvent
from .loader import LoadedModel, set_threads
from .model import Chunk
from .sampling import SamplingParams


class QueueFull(Exception):
    """The model's queue holds as many waiting requests as it may."""


@dataclass
class Job:
    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None
    cached_tokens: int = 0  # prompt tokens whose keys and values came from the prefix cache
    submitted: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        self.cancelled.set()

    def _emit(self, item) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, item)


class Observer:
    """What the runner reports as it goes (the server turns it into metrics). No-ops here."""

    def queue(self, running: int, waiting: int) -> None: ...
    def admitted(self, job: Job) -> None: ...
    def token(self, job: Job, seconds: float, first: bool) -> None: ...
    def rejected(self) -> None: ...


@dataclass
class Slot:
    """A sequence's place in the KV cache and the tokens whose keys and values it holds."""
    index: int
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    last_used: float = 0.0


@dataclass
class Running:
    job: Job
    slot: Slot
    seq: Sequence
    last_event: float  # when its previous token (or its admission) happened

    @property
    def pending(self) -> list[int]:
        """Context tokens not yet in the cache: the prompt's rest, or the last sampled token."""
        return self.seq.context[len(self.slot.tokens):]


_DONE = object()


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class ModelRunner:
    def __init__(self, loaded: LoadedModel, n_ctx: int, queue_size: int = 16, timeout: float | None = None,
                 parallel: int = 4, step_tokens: int = 256, cache_slots: int = 4, observer: Observer | None = None,
                 threads: int | None = None):
        self.loaded, self.n_ctx, self.queue_size, self.timeout = loaded, n_ctx, queue_size, timeout
        self.threads = threads
        self.parallel, self.step_tokens = parallel, max(step_tokens, parallel)
        self.observer = observer or Observer()
        self.cache = loaded.model.new_cache(n_ctx, parallel + cache_slots)
        self.slots = [Slot(i) for i in range(parallel + cache_slots)]
        self.running: list[Running] = []
        self._waiting: collections.deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="llamba-model", daemon=True)
        self._thread.start()

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> Job:
        job = Job(list(prompt_ids), params, asyncio.get_running_loop())
        if self.timeout:
            job.deadline = time.monotonic() + self.timeout
        with self._wake:
            if len(self._waiting) >= self.queue_size:
                self.observer.rejected()
                raise QueueFull(f"{len(self._waiting)} requests are already waiting for this model")
            self._waiting.append(job)
            self._report()
            self._wake.notify()
        return job

    async def stream(self, job: Job):
        """The job's TokenEvents as they come; cancels the job if the consumer goes away."""
        try:
            while True:
                item = await job.events.get()
                if item is _DONE:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            job.cancel()

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()

    def _run(self) -> None:
        set_threads(self.threads)  # numba's thread count belongs to the thread that calls the kernels
        while True:
            with self._wake:
                while not self._waiting and not self.running and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                while self._waiting and len(self.running) < self.parallel:
                    self._admit(self._waiting.popleft())
                self._report()
            try:
                self._step()
            except Exception as e:  # reported to every request in the step; the model keeps serving
                for r in list(self.running):
                    r.job._emit(e)
                    self._retire(r)

    def _admit(self, job: Job) -> None:
        if job.cancelled.is_set():
            job._emit(_DONE)
            return
        try:
            seq = Sequence(self.loaded.tokenizer, job.prompt_ids, job.params, self.n_ctx)
        except ValueError as e:
            job._emit(e)
            job._emit(_DONE)
            return
        shared, slot = max(((common_prefix(s.tokens, job.prompt_ids), s) for s in self.slots if not s.busy),
                           key=lambda pair: (pair[0], -pair[1].last_used))
        # reuse at most all but the last prompt token: its logits start the generation
        job.cached_tokens = min(shared, len(job.prompt_ids) - 1)
        del slot.tokens[job.cached_tokens:]
        slot.busy = True
        self.running.append(Running(job, slot, seq, last_event=job.submitted))
        self.observer.admitted(job)

    def _retire(self, r: Running) -> None:
        r.slot.busy, r.slot.last_used = False, time.monotonic()
        self.running.remove(r)
        r.job._emit(_DONE)
        self._report()

    def _report(self) -> None:
        self.observer.queue(len(self.running), len(self._waiting))

    def _step(self) -> None:
        for r in [r for r in self.running if r.job.cancelled.is_set()]:
            self._retire(r)
        # decoding requests first (one token each), then prompt chunks within the token budget
        batch, budget = [], self.step_tokens
        for r in sorted(self.running, key=lambda r: len(r.pending) > 1):
            tokens = r.pending[:budget]
            if tokens:
                batch.append((r, Chunk(r.slot.index, len(r.slot.tokens), tokens)))
                budget -= len(tokens)
        if not batch:
            return
        logits = self.loaded.model.step([chunk for _, chunk in batch], self.cache)
        now = time.monotonic()
        for (r, chunk), row in zip(batch, logits):
            r.slot.tokens.extend(chunk.tokens)
            if r.pending:  # the prompt is not all in yet
                continue
            event = r.seq.accept(row)
            if r.job.deadline is not None and now > r.job.deadline and not event.finish_reason:
                event.finish_reason = "length"  # out of time: cut short, like max_tokens
            self.observer.token(r.job, now - r.last_event, first=len(r.seq.generated) == 1)
            r.last_event = now
            r.job._emit(event)
            if event.finish_reason:
                self._retire(r)


__all__ = ["ModelRunner", "Job", "QueueFull", "TokenEvent", "Observer"]
