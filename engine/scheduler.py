"""The owner of one loaded model: a single compute thread that runs one generation step at a time,
fed by a bounded FIFO queue. The event loop never runs model maths: it submits requests and
awaits their token events; cancelling (a client gone, a timeout) stops a generation within one
token and frees its place."""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

from .generate import TokenEvent, generate
from .loader import LoadedModel
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

    def cancel(self) -> None:
        self.cancelled.set()

    def _emit(self, item) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, item)


_DONE = object()


class ModelRunner:
    def __init__(self, loaded: LoadedModel, n_ctx: int, queue_size: int = 16, timeout: float | None = None):
        self.loaded, self.n_ctx, self.queue_size, self.timeout = loaded, n_ctx, queue_size, timeout
        self._waiting: collections.deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="llamba-model", daemon=True)
        self._thread.start()

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> Job:
        job = Job(prompt_ids, params, asyncio.get_running_loop())
        if self.timeout:
            job.deadline = time.monotonic() + self.timeout
        with self._wake:
            if len(self._waiting) >= self.queue_size:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting for this model")
            self._waiting.append(job)
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
        while True:
            with self._wake:
                while not self._waiting and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                job = self._waiting.popleft()
            self._generate(job)

    def _generate(self, job: Job) -> None:
        try:
            if job.cancelled.is_set():
                return
            lm = self.loaded
            cache = lm.model.new_cache(self.n_ctx)
            for event in generate(lm.model, lm.tokenizer, job.prompt_ids, job.params, cache):
                if job.cancelled.is_set():
                    return
                if job.deadline is not None and time.monotonic() > job.deadline and not event.finish_reason:
                    event.finish_reason = "length"  # out of time: cut short, like max_tokens
                job._emit(event)
                if event.finish_reason:
                    return
        except Exception as e:  # reported to the request, the model keeps serving
            job._emit(e)
        finally:
            job._emit(_DONE)


__all__ = ["ModelRunner", "Job", "QueueFull", "TokenEvent"]
