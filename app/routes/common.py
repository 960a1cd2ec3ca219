"""What every API's routes share: the server's state, the API key, the model a request names, and
`submit`, which queues a request and turns the engine's refusals into the API's errors."""
from __future__ import annotations

import asyncio
import hmac
import importlib
import logging
from collections import defaultdict
from contextlib import contextmanager
from types import ModuleType
from dataclasses import replace

from fastapi import Request
from pydantic import BaseModel

from llamba.engine.chat import ChatPlan
from llamba.engine.errors import InvalidRequest
from llamba.engine.sampling import SamplingParams
from llamba.engine.scheduler import Job, ModelRunner, QueueFull
from llamba.app.errors import OpenAIError, bad_request
from llamba.app.schemas import ErrorResponse

log = logging.getLogger("llamba")
# the error answers, in OpenAI's shape, as the OpenAPI document describes them
ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in (
    (400, "Invalid request"), (401, "Missing or wrong API key"), (404, "No such model"),
    (413, "Request body too large"), (429, "The model's queue is full"),
    (503, "Loading, or shutting down"))}
_reported_fields: set[str] = set()


def generation(reply: type) -> dict:
    """A generation endpoint's answers: the whole reply as JSON, or a stream of its chunks."""
    return {200: {"model": reply, "content": {"text/event-stream": {}}}, **ERRORS}


# The serving modules built on an SDK's types (openai's Responses, anthropic's Messages): the two
# SDKs take ~2 s to import, which start-up does not wait for (app/main.py imports them in the
# background once the server listens); a request that comes first waits for them, off the loop.
RESPONSES, MESSAGES = "llamba.app.serving.responses", "llamba.app.serving.messages"
_serving: dict[str, ModuleType] = {}


async def sdk_serving(name: str) -> ModuleType:
    if name not in _serving:
        _serving[name] = await asyncio.to_thread(importlib.import_module, name)
    return _serving[name]


def state(request: Request):
    return request.app.state.llamba


def key_is_valid(given: str, keys: list[str]) -> bool:
    """Compared in constant time with every key, so the time taken tells nothing about a key."""
    given_bytes = given.encode()
    return sum(hmac.compare_digest(given_bytes, k.encode()) for k in keys) > 0


async def authorize(request: Request) -> None:
    keys = state(request).settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    # as OpenAI's clients send it, or as Anthropic's (x-api-key)
    given = header[7:] if header.startswith("Bearer ") else request.headers.get("x-api-key")
    if given is None or not key_is_valid(given, keys):
        raise OpenAIError(401, "Incorrect API key provided." if header or given else "Missing API key: send "
                          "'Authorization: Bearer <key>' or 'x-api-key: <key>'.", code="invalid_api_key")


async def runner_for(request: Request, model: str | None, keep_alive: float | None = None) -> ModelRunner:
    """The runner of the model a request names (None: the first), loading it first where it is
    a models folder's and not loaded (app/model_pool.py)."""
    st = state(request)
    if st.draining:
        raise OpenAIError(503, "The server is shutting down; retry on another instance or later.",
                          type="server_error", headers={"Retry-After": "5"})
    if not st.ready:
        raise OpenAIError(503, "The model is still loading.", type="server_error")
    return await st.pool.runner(model, keep_alive)


def note_ignored_fields(body: BaseModel) -> None:
    """Fields this server does not know are ignored, as OpenAI does; each name is logged once."""
    for name in sorted(set(body.model_extra or {}) - _reported_fields):
        _reported_fields.add(name)
        log.warning("ignoring the request field %r, which llamba does not support", name)


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


def submit_chat(runner: ModelRunner, plan: ChatPlan, params: SamplingParams, n: int, fields: dict[str, str]) -> Job:
    """Queue a chat turn as its plan says: its prompt, under its grammar; a grammar the engine
    refuses is named as the field it came from (the tools, or the output format)."""
    params = replace(params, grammar=plan.grammar, grammar_triggers=plan.triggers)
    return submit(runner, [plan.prompt_ids], params, n, {**fields, "grammar": fields.get(plan.grammar_from,
                                                                                         plan.grammar_from)})


def token_lists(value: str | list, tok, parse_special: bool) -> list[list[int]]:
    """A prompt or input as OpenAI takes it (a string, a list of strings, token ids, or lists of
    token ids) as lists of token ids."""
    if isinstance(value, str):
        return [tok.encode(value, add_special=True, parse_special=parse_special)]
    if value and all(isinstance(x, int) for x in value):
        return [list(value)]
    return [tok.encode(x, add_special=True, parse_special=parse_special) if isinstance(x, str) else list(x)
            for x in value]


async def collect(runner: ModelRunner, job: Job, request: Request) -> dict[int, list]:
    """All of a job's events, by choice index; stops the job if the client goes away first."""
    async def watch():
        while not job.cancelled.is_set():
            if await request.is_disconnected():
                job.cancel()
                return
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    events = defaultdict(list)
    try:
        async for event in runner.stream(job):
            events[event.index].append(event)
        return events
    finally:
        watcher.cancel()
