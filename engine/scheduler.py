"""The owner of one loaded model: a compute thread that batches every running request into each
forward step (continuous batching), fed by a bounded FIFO queue.

A request's life, and the names it goes by:
- `submit` checks it (engine rules, `InvalidRequest`) and queues it as a `Job`: its prompts and
  sampling parameters, `n` choices per prompt, and the queue its `TokenEvent`s come back on. A
  full queue refuses it (`QueueFull`).
- Between steps the compute thread admits waiting jobs while their choices fit in `parallel`.
  Each choice is a `Choice`: a KV-cache `Slot` (the token ids whose keys and values it holds) and
  a `Sequence` (generate.py: sampling, stop strings, logprobs, detokenizing).
- Each step runs, as one batch, a `Span` (model.py) per choice: the next token of every decoding
  choice, then pieces of the prompts of newly admitted ones (up to `step_tokens` tokens), so every
  weight is read once per step for all of them. The choices of one prompt share it: the first
  computes it, the others share its keys and values and start from the same logits.
- A decoding choice whose context repeats itself may also run a draft of its next tokens in the
  step, looked up in its own context (speculation.py), while the step is small: the logits after
  each drafted token say how many of them are the tokens it would have generated anyway.
- Each choice's new token becomes a `TokenEvent` (with the choice's index) on its job's queue;
  when every choice of a job has finished, or the job is cancelled (the client went away), the
  job ends and its slots are free for the next.

A token's result does not depend on its batch (see engine/kernels), so a request gets the same
tokens alone or among others.

The KV cache (kv_cache.py) has a slot per running choice plus `cache_slots` more, and a pool of
blocks enough for every running choice's whole context. A finished choice's slot keeps its keys
and values while the pool has room (idle slots give their blocks back, least recently used first,
when a step needs them). A new choice takes a free slot and shares the blocks of the slot, running
or not, with the longest common prefix, and computes only the rest. That is prefix caching: a
chat's next turn repeats the conversation and pays only for the new message, and requests with
one system prompt hold its keys and values once.

The event loop never runs model maths: it submits jobs and awaits their token events.
"""
from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .compute_lock import COMPUTE
from .embeddings import Embedding, check_inputs
from .errors import InvalidRequest
from .generate import Sequence, TokenEvent, check_request
from .job import Job, Observer, QueueFull
from .loader import LoadedModel, set_threads
from .kv_cache import KVCache
from .model import Span
from .sampling import SamplingParams
from .speculation import Drafter, add_drafts
from .warmup import Warmup


@dataclass(frozen=True)
class RunnerConfig:
    """How a model runner serves. No defaults here: the server's settings (app/settings.py) are
    their one home (`Settings.runner_config`)."""
    n_ctx: int                    # positions per choice (capped by the model's own)
    parallel: int                 # choices generated together
    queue_size: int               # jobs that may wait
    step_tokens: int              # tokens per step: decoding choices' next tokens, then prompt pieces
    cache_slots: int              # finished prompts kept for prefix reuse
    kv_type: str                  # "f16", "f32" or "q8_0"
    timeout: float | None         # seconds a job may run (None: no limit)
    max_tokens_limit: int | None  # a request's max_tokens at most (None: the context)
    threads: int | None           # compute threads (None: every core)
    speculative: bool             # drafts from the context checked in each step (speculation.py)


@dataclass
class Slot:
    """A place in the KV cache and the token ids whose keys and values it holds."""
    index: int
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    last_used: float = 0.0


@dataclass(eq=False)
class Choice:
    """One generated sequence of a job, in its KV slot."""
    job: Job
    index: int              # the choice's index in the response (prompt * n + i)
    slot: Slot
    sequence: Sequence | Embedding  # a generation's state, or an embedding's
    last_event: float       # when its previous token (or its admission) happened
    leader: "Choice | None" = None  # the choice computing the prompt this one shares (until it has)
    drafter: Drafter | None = None  # its drafts' lengths and pauses, where the runner speculates

    @property
    def pending(self) -> list[int]:
        """Context tokens not yet in the cache: the prompt's rest, or the last sampled token."""
        return self.sequence.context[len(self.slot.tokens):]


_DONE = object()


class ModelRunner:
    def __init__(self, loaded: LoadedModel, config: RunnerConfig, observer: Observer | None = None,
                 defaults: SamplingParams | None = None, warmup: Warmup | None = None):
        """`defaults`: the sampling for what requests leave out (None: the model's own)."""
        self.loaded, self.config, n_ctx = loaded, config, loaded.model.config.context(config.n_ctx)
        self.n_ctx, self.queue_size, self.timeout, self.threads = n_ctx, config.queue_size, config.timeout, config.threads
        self.parallel, self.step_tokens = config.parallel, max(config.step_tokens, config.parallel)
        # a request may ask for no more tokens than the context holds, or the operator allows
        self.max_tokens_limit = min(n_ctx, config.max_tokens_limit or n_ctx)
        defaults = defaults or loaded.sampling  # sampling defaults for what requests leave out
        if defaults.max_tokens is None or defaults.max_tokens > self.max_tokens_limit:
            defaults = replace(defaults, max_tokens=self.max_tokens_limit)
        self.defaults = defaults
        self.observer = observer or Observer()
        slots = config.parallel + config.cache_slots
        self.cache = loaded.model.new_cache(n_ctx, slots, config.kv_type, n_blocks=config.parallel * KVCache.tiles(n_ctx),
                                            step_tokens=self.step_tokens)
        self.slots = [Slot(i) for i in range(slots)]
        self.running: list[Choice] = []
        self._waiting: collections.deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self.warmup = warmup  # compiles the kernels in this runner's thread before it serves
        self.ready = threading.Event()  # set once they are (at once without a warm-up)
        self.compile_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="llamba-model", daemon=True)
        self._thread.start()

    def submit(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> Job:
        """Queue a request (in the event loop's thread). Raises InvalidRequest or QueueFull.
        `params.max_tokens` None takes the model's default, which ends at the context's end; a
        number is the request's own and must fit in the context with each prompt."""
        for ids in prompts or [[]]:
            check_request(self.loaded.model, ids, params, self.n_ctx)
        if params.max_tokens is None:
            params = replace(params, max_tokens=self.defaults.max_tokens)
        else:
            for ids in prompts:
                if len(ids) + params.max_tokens > self.n_ctx:
                    raise InvalidRequest(f"This model's context is {self.n_ctx} tokens; the request needs "
                                         f"{len(ids) + params.max_tokens} ({len(ids)} in the prompt, "
                                         f"{params.max_tokens} to generate).", param="max_tokens",
                                         code="context_length_exceeded")
            if params.max_tokens > self.max_tokens_limit:
                raise InvalidRequest(f"max_tokens is too large: {params.max_tokens}. This server allows at most "
                                     f"{self.max_tokens_limit} completion tokens.", param="max_tokens")
        job = Job([list(p) for p in prompts], params, n, asyncio.get_running_loop())
        if params.grammar is not None:  # compiled here, off the model's thread: a bad one is refused at once
            job.constraint = self.loaded.grammars.constraint(params.grammar, triggers=params.grammar_triggers)
        return self._queue(job)

    def _queue(self, job: Job) -> Job:
        if job.choices > self.parallel:
            what = "inputs" if job.pooling else f"choices ({len(job.prompts)} prompts x n={job.n})"
            raise InvalidRequest(f"{job.choices} {what} exceed the {self.parallel} this server runs at once",
                                 param="prompt" if job.pooling else "n")
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

    def submit_embeddings(self, prompts: list[list[int]], pooling: str) -> Job:
        """Queue inputs to embed (in the event loop's thread): one EmbeddingEvent per input comes
        back. Raises InvalidRequest (embeddings.check_inputs) or QueueFull."""
        check_inputs(self.loaded.model, prompts, self.n_ctx)
        job = Job([list(p) for p in prompts], SamplingParams(), 1, asyncio.get_running_loop(), pooling=pooling)
        return self._queue(job)

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

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing waits."""
        return not self.running and not self._waiting

    def cut_short(self) -> None:
        """Every job, running or waiting, finishes at its next token with finish_reason "length"
        (a shutdown's grace period is over)."""
        with self._wake:
            for job in {c.job for c in self.running} | set(self._waiting):
                job.deadline = 0.0

    def close(self, wait: bool = False) -> None:
        """Stops the model's thread (and, `wait`, returns once it has ended and let go of the model)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if wait:
            self._thread.join()

    def _run(self) -> None:
        # numba's thread count, and its OpenMP team, belong to the thread that calls the kernels:
        # compiled and first run in another thread that stays alive, they ran 2x slower here
        set_threads(self.threads)
        warmup = self.warmup
        try:
            if warmup:
                self.compile_seconds = warmup.run(self.loaded.model)
        finally:
            self.observer.compiling(bool(warmup and warmup.background))
            self.ready.set()
        while True:
            if warmup and warmup.poll():  # the parallel and one-token kernels are in
                warmup = None
                self.observer.compiling(False)
            with self._wake:
                while not self._waiting and not self.running and not self._stopping:
                    if not self._wake.wait(timeout=0.5 if warmup else None):
                        break  # to poll the warm-up
                if self._stopping:
                    if warmup:
                        warmup.close()
                    return
                while self._waiting and len(self.running) + self._waiting[0].choices <= self.parallel:
                    self._admit(self._waiting.popleft())
                self._report()
            try:
                self._step()
            except Exception as e:  # reported to every request in the step; the model keeps serving
                for job in {c.job for c in self.running}:
                    job._emit(e)
                    self._end(job)

    def _admit(self, job: Job) -> None:
        if job.cancelled.is_set():
            job._emit(_DONE)
            return
        job.unfinished = job.choices
        if job.pooling:  # each input in a slot of its own, from its first token (its every hidden state is pooled)
            for p, prompt in enumerate(job.prompts):
                self.running.append(Choice(job, p, self._take_slot(job, prompt, shared=False),
                                           Embedding(prompt, job.pooling, p), last_event=job.submitted))
            self.observer.admitted(job)
            return
        for p, prompt in enumerate(job.prompts):
            leader = None
            for i in range(job.n):
                sequence = Sequence(self.loaded.tokenizer, prompt, job.params, self.n_ctx, index=i,
                                    constraint=job.constraint.copy() if job.constraint else None)
                choice = Choice(job, p * job.n + i, self._take_slot(job, prompt, shared=leader is None),
                                sequence, last_event=job.submitted, leader=leader,
                                drafter=Drafter() if self.config.speculative else None)
                self.running.append(choice)
                leader = leader or choice
        self.observer.admitted(job)

    def _take_slot(self, job: Job, prompt: list[int], shared: bool) -> Slot:
        """A free slot holding the prompt's longest prefix that any slot holds (for the choice
        that computes the prompt; the others wait for it): that slot itself if it is free, else
        the least recently used free one, sharing the other's blocks."""
        free = [s for s in self.slots if not s.busy]
        # reuse at most all but the last prompt token: its logits start the generation
        # (a sliding-window model goes on only from where the cache still holds the window: reusable();
        # os.path.commonprefix takes any sequences)
        prefix, source = max(((self.cache.reusable(s.index, min(len(os.path.commonprefix([s.tokens, prompt])), len(prompt) - 1))
                               if shared else 0, s) for s in self.slots),
                             key=lambda pair: (pair[0], not pair[1].busy, -pair[1].last_used))
        slot = source if source in free else min(free, key=lambda s: s.last_used)
        if slot is not source and prefix > 0:
            self.cache.share(source.index, slot.index, prefix)
        else:
            self.cache.truncate(slot.index, prefix)
        slot.tokens = prompt[:prefix]
        job.cached_tokens += prefix
        slot.busy = True
        return slot

    def _make_room(self, spans: list[Span]) -> None:
        """Idle slots give their blocks back, least recently used first, until the pool has the
        blocks this step writes into."""
        claims = [(sp.slot, sp.start, sp.start + len(sp.tokens)) for sp in spans]
        for slot in sorted((s for s in self.slots if not s.busy and s.tokens), key=lambda s: s.last_used):
            if self.cache.fits(claims):
                return
            self.cache.truncate(slot.index, 0)
            slot.tokens = []

    def _end(self, job: Job) -> None:
        """Retire every choice of a job and end its event stream."""
        for c in [c for c in self.running if c.job is job]:
            c.slot.busy, c.slot.last_used = False, time.monotonic()
            self.running.remove(c)
        job._emit(_DONE)
        self._report()

    def _report(self) -> None:
        self.observer.queue(len({c.job for c in self.running}), len(self._waiting), sum(s.busy for s in self.slots),
                            self.cache.usage())

    def _step(self) -> None:
        for job in {c.job for c in self.running if c.job.cancelled.is_set()}:
            self._end(job)
        # decoding choices first (one token each), then prompt pieces within the token budget;
        # a choice sharing another's prompt waits for it
        batch, budget = [], self.step_tokens
        for c in sorted(self.running, key=lambda c: len(c.pending) > 1):
            tokens = [] if c.leader else c.pending[:budget]
            if tokens:
                batch.append((c, Span(c.slot.index, len(c.slot.tokens), tokens)))
                budget -= len(tokens)
        if not batch:
            return
        add_drafts(batch, self.step_tokens)
        self._make_room([span for _, span in batch])
        embedding = any(isinstance(c.sequence, Embedding) for c, _ in batch)
        with COMPUTE:  # (another model's step, or its warm-up, waits for this one: compute_lock.py)
            logits = self.loaded.model.step([span for _, span in batch], self.cache, with_hidden=embedding)
        if embedding:
            logits, hidden = logits
            ends = np.cumsum([len(span.tokens) for _, span in batch])
        now = time.monotonic()
        firsts = np.cumsum([0] + [span.logits for _, span in batch])
        for k, ((c, span), row) in enumerate(zip(batch, logits[firsts[:-1]])):
            if span.logits > 1:
                self._check_draft(c, span, logits[firsts[k]:firsts[k + 1]], now)
                continue
            c.slot.tokens.extend(span.tokens)
            if isinstance(c.sequence, Embedding):
                if event := c.sequence.take(hidden[ends[k] - len(span.tokens):ends[k]], whole=not c.pending):
                    self._finish(c, event)
                continue
            if c.pending:  # the prompt is not all in yet
                continue
            # the prompt is in: the choices sharing it start from here too, each on its own from now
            for f in [f for f in self.running if f.leader is c]:
                self.cache.share(c.slot.index, f.slot.index, len(c.slot.tokens))
                f.slot.tokens, f.leader = list(c.slot.tokens), None
                self._emit(f, row, now)
            self._emit(c, row, now)

    def _check_draft(self, c: Choice, span: Span, logits: np.ndarray, now: float) -> None:
        """Sample from the logits after the last token, then after each drafted token while the
        draft held the token sampled: the keys and values of the tokens it got wrong are dropped.
        (The counts are in before the events go: the last one may end the response, with its usage.)"""
        draft, events = span.tokens[1:], []
        c.slot.tokens.append(span.tokens[0])
        for row, drafted in zip(logits, draft + [None]):
            events.append(self._sample(c, row, now))
            if events[-1].finish_reason or events[-1].token_id != drafted:
                break
            c.slot.tokens.append(drafted)
        self.cache.truncate(c.slot.index, len(c.slot.tokens))
        accepted = len(events) - 1
        c.drafter.record(len(draft), accepted)
        c.job.drafted_tokens += len(draft)
        c.job.accepted_tokens += accepted
        self.observer.drafted(c.job, len(draft), accepted)
        for event in events:
            self._send(c, event)

    def _emit(self, c: Choice, logits, now: float) -> None:
        self._send(c, self._sample(c, logits, now))

    def _sample(self, c: Choice, logits, now: float) -> TokenEvent:
        event = c.sequence.accept(logits, last=c.job.deadline is not None and now > c.job.deadline)
        self.observer.token(c.job, now - c.last_event, first=len(c.sequence.generated) == 1)
        c.last_event = now
        return event

    def _send(self, c: Choice, event: TokenEvent) -> None:
        if event.finish_reason:
            self._finish(c, event)
        else:
            c.job._emit(event)

    def _finish(self, c: Choice, event) -> None:
        """A choice's last event: its slot is free again, and its job ends with its last choice."""
        c.job._emit(event)
        c.slot.busy, c.slot.last_used = False, time.monotonic()
        self.running.remove(c)
        c.job.unfinished -= 1
        if c.job.unfinished == 0:
            c.job._emit(_DONE)
        self._report()


__all__ = ["ModelRunner", "RunnerConfig"]
