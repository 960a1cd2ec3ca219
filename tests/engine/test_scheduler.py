"""The model runner in this process (no server): admission up to `parallel`, a full queue, the
engine's request rules, cancellation, prefix reuse, and n choices sharing one prompt."""
import asyncio
import threading
import time
from dataclasses import replace

import pytest

from llamba.engine.errors import InvalidRequest
from llamba.engine.generate import generate
from llamba.engine.sampling import SamplingParams
from llamba.engine.job import Observer, QueueFull
from llamba.engine.scheduler import ModelRunner
from tests.support import SMOLLM2, loaded, model_runner

GREEDY = SamplingParams(temperature=0, max_tokens=8)
LONG = SamplingParams(temperature=0, max_tokens=400, ignore_eos=True)


class Recorder(Observer):
    def __init__(self):
        self.queues, self.compiles = [], []

    def queue(self, running: int, waiting: int, busy_slots: int, kv_usage: float) -> None:
        self.queues.append((running, waiting))

    def compiling(self, busy: bool) -> None:
        self.compiles.append(busy)


@pytest.fixture(scope="module")
def lm():
    return loaded(SMOLLM2)


def prompt(lm, text: str) -> list[int]:
    return lm.chat_prompt_ids([{"role": "user", "content": text}])


async def tokens(runner: ModelRunner, job) -> dict[int, list[int]]:
    out = {}
    async for event in runner.stream(job):
        out.setdefault(event.index, []).append(event.token_id)
    return out


def test_admits_up_to_parallel_and_queues_the_rest(lm):
    async def go():
        observer = Recorder()
        runner = model_runner(lm, n_ctx=512, queue_size=4, parallel=2, observer=observer)
        jobs = [runner.submit([prompt(lm, f"Story {i}.")], LONG) for i in range(3)]
        for _ in range(1000):  # until two are admitted, one step apart at most (a guard, not a speed check)
            if len({c.job for c in runner.running}) == 2:
                break
            await asyncio.sleep(0.01)
        running_then = (len({c.job for c in runner.running}), len(runner._waiting))
        for job in jobs:
            job.cancel()
        runner.close()
        return running_then, observer.queues
    (running, waiting), reports = asyncio.run(go())
    assert (running, waiting) == (2, 1)
    assert max(r for r, _ in reports) == 2  # never more than `parallel` at once


def test_full_queue_refuses_at_submission(lm):
    async def go():
        runner = model_runner(lm, n_ctx=512, queue_size=1, parallel=1)
        first = runner.submit([prompt(lm, "One.")], LONG)
        for _ in range(1000):  # until it is admitted and the queue is empty again (a hang guard)
            if any(c.job is first for c in runner.running):
                break
            await asyncio.sleep(0.01)
        second = runner.submit([prompt(lm, "Two.")], LONG)
        with pytest.raises(QueueFull):
            runner.submit([prompt(lm, "Three.")], LONG)
        first.cancel(), second.cancel()
        runner.close()
    asyncio.run(go())


def test_engine_rules_are_checked_at_submission(lm):
    async def go():
        runner = model_runner(lm, n_ctx=64, parallel=2)
        cases = [([[]], GREEDY, 1), ([[10 ** 6]], GREEDY, 1), ([list(range(100, 200))], GREEDY, 1),
                 ([[1, 2]], SamplingParams(logit_bias={-1: 1.0}), 1), ([[1, 2]], GREEDY, 3)]
        errors = []
        for prompts, params, n in cases:
            with pytest.raises(InvalidRequest) as e:
                runner.submit(prompts, params, n=n)
            errors.append((e.value.param, e.value.code))
        runner.close()
        return errors
    assert asyncio.run(go()) == [("prompt", None), ("prompt", None), ("prompt", "context_length_exceeded"),
                         ("logit_bias", None), ("n", None)]


def test_cancelling_frees_the_slot(lm):
    async def go():
        runner = model_runner(lm, n_ctx=512, parallel=1)
        job = runner.submit([prompt(lm, "Write a long story.")], LONG)
        seen = 0
        async for _ in runner.stream(job):  # leaving the loop cancels the job
            seen += 1
            if seen == 3:
                break
        for _ in range(200):
            if not runner.running:
                break
            await asyncio.sleep(0.01)
        slots_busy = [s.busy for s in runner.slots]
        after = await tokens(runner, runner.submit([prompt(lm, "Hi")], GREEDY))
        runner.close()
        return runner.running, slots_busy, after
    running, busy, after = asyncio.run(go())
    assert running == [] and not any(busy)
    assert len(after[0]) >= 1


def test_a_repeated_prefix_is_reused(lm):
    async def go():
        runner = model_runner(lm, n_ctx=512, parallel=1, cache_slots=1)
        first_ids = prompt(lm, "Name a colour.")
        first = runner.submit([first_ids], GREEDY)
        answer = (await tokens(runner, first))[0]
        second_ids = first_ids + answer + prompt(lm, "And another.")
        second = runner.submit([second_ids], GREEDY)
        await tokens(runner, second)
        runner.close()
        return first.cached_tokens, second.cached_tokens, len(first_ids) + len(answer) - 1
    first, second, reusable = asyncio.run(go())
    assert first == 0 and second == reusable  # all but the first answer's last token (never computed)


def test_requests_with_one_system_prompt_hold_its_keys_and_values_once(lm):
    """A request whose prompt starts as a running one's does shares its blocks (no copy, no
    recompute) and still gets the tokens it gets alone."""
    system = {"role": "system", "content": "You are a careful assistant. " * 30}
    first_ids, second_ids = (lm.chat_prompt_ids([system, {"role": "user", "content": q}])
                             for q in ("Tell me a story.", "Name a colour."))
    common = next(i for i, (a, b) in enumerate(zip(first_ids, second_ids)) if a != b)
    alone = [e.token_id for e in generate(lm.model, lm.tokenizer, second_ids, GREEDY, lm.model.new_cache(512))]

    async def go():
        runner = model_runner(lm, n_ctx=512, parallel=2, cache_slots=0)
        first = runner.submit([first_ids], replace(LONG, max_tokens=512 - len(first_ids)))
        events = runner.stream(first)
        await anext(events)  # its prompt is in the cache
        second = runner.submit([second_ids], GREEDY)
        answer = (await tokens(runner, second))[0]
        second_slot = next(s for s in runner.slots if s.tokens[:len(second_ids)] == second_ids)
        tables = runner.cache.pools[0].table[[runner.running[0].slot.index, second_slot.index]]
        first.cancel()
        runner.close()
        return second.cached_tokens, answer, tables
    cached, answer, tables = asyncio.run(go())
    assert cached == common > 150 and answer == alone
    shared_tiles = common // 32
    assert (tables[0, :shared_tiles] == tables[1, :shared_tiles]).all()  # the same blocks


def test_n_choices_share_the_prompt_each_with_its_own_seed(lm):
    ids = prompt(lm, "Tell me about the sea.")
    alone = [e.token_id for e in generate(lm.model, lm.tokenizer, ids, GREEDY, lm.model.new_cache(512))]
    seeded = SamplingParams(temperature=0.8, seed=11, max_tokens=12)

    async def go():
        runner = model_runner(lm, n_ctx=512, parallel=4)
        greedy = await tokens(runner, runner.submit([ids], GREEDY, n=3))
        first = await tokens(runner, runner.submit([ids], seeded, n=3))
        again = await tokens(runner, runner.submit([ids], seeded, n=3))
        runner.close()
        return greedy, first, again
    greedy, first, again = asyncio.run(go())
    assert greedy == {0: alone, 1: alone, 2: alone}
    assert first == again and len({tuple(t) for t in first.values()}) > 1
    # each choice is the sequence its own stream of random numbers draws alone, from its own
    # tokens (the first, the one n = 1 with the same seed draws)
    assert first == {i: [e.token_id for e in generate(lm.model, lm.tokenizer, ids, seeded, lm.model.new_cache(512), i)]
                     for i in range(3)}


def test_a_deadline_cut_flushes_the_text_held_back(lm):
    """A choice cut short (request_timeout, or the shutdown's grace over) ends as max_tokens ends
    it: the text held back for a possible stop string reaches the client. The stop string is the
    whole greedy answer and more, so every piece of text is held until the cut."""
    ids = prompt(lm, "Tell me a story.")
    answer = "".join(e.text for e in generate(lm.model, lm.tokenizer, ids, LONG, lm.model.new_cache(512)))

    async def go():
        runner = model_runner(lm, n_ctx=512)
        job = runner.submit([ids], SamplingParams(temperature=0, max_tokens=400, ignore_eos=True,
                                                  stop=[answer + "\x00"]))
        events = []
        async for event in runner.stream(job):
            events.append(event)
            if len(events) == 3:
                runner.cut_short()
        runner.close()
        return events
    events = asyncio.run(go())
    assert events[-1].finish_reason == "length" and 3 < len(events) < 400
    text = "".join(e.text for e in events)
    assert text and text == lm.tokenizer.decode([e.token_id for e in events])
    assert answer.startswith(text)


class BackgroundCompile:
    """What the runner uses of a Warmup (warmup.py), compiling in the background until `done`."""

    def __init__(self):
        self.background, self.done = True, threading.Event()

    def run(self, model) -> float:
        return 0.0

    def poll(self) -> bool:
        return self.done.is_set()

    def close(self) -> None:
        pass


def test_reports_kernels_compiling_in_the_background_until_they_are_in(lm):
    """(/metrics' llamba_kernels_compiling, which the benches wait on before they measure)"""
    from llamba.app.settings import Settings
    observer, warmup = Recorder(), BackgroundCompile()
    runner = ModelRunner(lm, Settings().runner_config(n_ctx=256), observer, warmup=warmup)
    assert runner.ready.wait(600)
    reported_at_ready = list(observer.compiles)
    warmup.done.set()
    for _ in range(600):  # the runner polls its warm-up every 0.5 s while idle (a guard, not a speed check)
        if len(observer.compiles) > 1:
            break
        time.sleep(0.05)
    runner.close(wait=True)
    assert reported_at_ready == [True] and observer.compiles == [True, False]
