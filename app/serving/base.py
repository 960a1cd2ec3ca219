"""What every API's serving shares: a request submitted to its model's runner (a chat turn planned
first, `run_chat`), the engine's refusals named in the API's own field names, and the answers read
as they are generated (`AnswerStream`: each choice's token events and its reader's changes), which
each API's module only translates into its answer and its stream events (`sse`)."""
from __future__ import annotations

import asyncio
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from fastapi import Request
from pydantic import BaseModel

from llamba.engine.chat import ChatPlan, ChatRequest, plan_chat
from llamba.engine.chat.answer import AnswerReader, Change
from llamba.engine.errors import InvalidRequest
from llamba.engine.sampling import SamplingParams
from llamba.engine.job import Job, QueueFull
from llamba.engine.scheduler import ModelRunner
from llamba.app.errors import OpenAIError, bad_request

DONE = {"data": "[DONE]"}


def sse(event: BaseModel, name: str | None = None, omit_none: bool = True) -> dict:
    """One server-sent event: the JSON of `event` (None fields left out where the API leaves them
    out), under the event name `name` where the API names its events."""
    return {**({"event": name} if name else {}), "data": event.model_dump_json(exclude_none=omit_none)}


@contextmanager
def refusals(fields: dict[str, str]):
    """The engine's refusals of a request as the API's errors: InvalidRequest a 400 naming the
    request's field (`fields`: the request's name for each engine concept, "prompt", "max_tokens",
    "output", ...; one not in it keeps its name), a full queue a 429 with Retry-After."""
    try:
        yield
    except InvalidRequest as e:
        raise bad_request(str(e), param=fields.get(e.param, e.param), code=e.code) from None
    except QueueFull as e:
        raise OpenAIError(429, f"Too many requests: {e}. Retry shortly.", type="rate_limit_exceeded",
                          code="rate_limit_exceeded", headers={"Retry-After": "1"}) from None


def submit(runner: ModelRunner, prompts: list[list[int]], params: SamplingParams, n: int,
           fields: dict[str, str]) -> Job:
    """Queue a request as one job (so that every refusal, a full queue included, comes before any
    streaming starts)."""
    with refusals(fields):
        return runner.submit(prompts, params, n=n)


def plan(runner: ModelRunner, chat: ChatRequest, fields: dict[str, str]) -> ChatPlan:
    with refusals(fields):
        return plan_chat(runner.loaded, chat)


def run_chat(runner: ModelRunner, chat: ChatRequest, fields: dict[str, str]) -> tuple[ChatPlan, Job]:
    """Plan a chat turn and queue it: its prompt, under its grammar. A refusal names the API's
    field (`fields`), a grammar's the field it came from (the tools, or the output format)."""
    turn = plan(runner, chat, fields)
    params = replace(chat.sampling, grammar=turn.grammar, grammar_triggers=turn.triggers)
    job = submit(runner, [turn.prompt_ids], params, chat.n,
                 {**fields, "grammar": fields.get(turn.grammar_from, turn.grammar_from)})
    return turn, job


def token_lists(value: str | list, tok, parse_special: bool) -> list[list[int]]:
    """A prompt or input as OpenAI takes it (a string, a list of strings, token ids, or lists of
    token ids) as lists of token ids."""
    if isinstance(value, str):
        return [tok.encode(value, add_special=True, parse_special=parse_special)]
    if value and all(isinstance(x, int) for x in value):
        return [list(value)]
    return [tok.encode(x, add_special=True, parse_special=parse_special) if isinstance(x, str) else list(x)
            for x in value]


@dataclass
class Answer:
    """One choice's answer so far: its token events and, for a chat, its reader (None: plain text
    read as it comes, a completion's)."""
    events: list = field(default_factory=list)
    reader: AnswerReader | None = None
    reasoning_tokens: int = 0  # the tokens of its thinking (the ones that open and end it included)
    undecided: int = 0         # tokens read before the reader could tell whether it thinks

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events)

    @property
    def finish_reason(self) -> str:
        return self.events[-1].finish_reason if self.events else "stop"


class AnswerStream:
    """A job's answers as they are generated. Iterated, it yields each token event with the changes
    it made to its choice's answer (engine/chat/answer.py: a part opened, text added, a part
    closed; the reader finished with the choice's last event); `whole` reads every answer to its
    end, stopping the job if the client goes away first."""

    def __init__(self, runner: ModelRunner, job: Job, plan: ChatPlan | None = None):
        self.runner, self.job = runner, job
        self.answers = [Answer(reader=plan.reader() if plan else None) for _ in range(job.choices)]

    async def __aiter__(self):
        async for event in self.runner.stream(self.job):
            answer = self.answers[event.index]
            answer.events.append(event)
            changes: list[Change] = []
            if answer.reader is not None:
                thinking = answer.reader.thinking in ("maybe", "open")
                changes = answer.reader.push(event.text) + (answer.reader.finish() if event.finish_reason else [])
                if thinking:
                    answer.undecided += 1
                    if answer.reader.first:  # (it thinks: so were they)
                        answer.reasoning_tokens, answer.undecided = answer.reasoning_tokens + answer.undecided, 0
            yield event, changes
        for answer in self.answers:  # a job stopped early (its client gone): its answers end where they are
            if answer.reader is not None and not (answer.events and answer.events[-1].finish_reason):
                answer.reader.finish()

    async def whole(self, request: Request) -> AnswerStream:
        async def watch():
            while not self.job.cancelled.is_set():
                if await request.is_disconnected():
                    self.job.cancel()
                    return
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        try:
            async for _ in self:
                pass
            return self
        finally:
            watcher.cancel()

    @property
    def generated(self) -> int:
        return sum(len(a.events) for a in self.answers)

    @property
    def reasoning_tokens(self) -> int:
        return sum(a.reasoning_tokens for a in self.answers)
