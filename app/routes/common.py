"""What every API's routes share: the server's state, the API key, the model a request names (and the
fields it has that llamba does not know), and the error answers' shape."""
from __future__ import annotations

import hmac
import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from llamba.engine.scheduler import ModelRunner
from llamba.app.errors import OpenAIError
from llamba.app.protocol.common import ErrorResponse, new_id, now

log = logging.getLogger("llamba")
# the error answers, in OpenAI's shape, as the OpenAPI document describes them
ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in (
    (400, "Invalid request"), (401, "Missing or wrong API key"), (404, "No such model"),
    (413, "Request body too large"), (429, "The model's queue is full"),
    (503, "Loading, or shutting down"))}
_reported_fields: set[str] = set()


def generation(reply: type) -> dict:
    """A generation endpoint's answers: the whole reply as JSON, or a stream of its events."""
    return {200: {"model": reply, "content": {"text/event-stream": {}},
                  "description": f"A {reply.__name__}, or its stream"}, **ERRORS}


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


async def runner_for(request: Request, body: BaseModel) -> ModelRunner:
    """The runner of the model a request names (None: the first), loading it first where it is a
    models folder's and not loaded (app/model_pool.py), kept for the request's `keep_alive` where it
    has one. Fields llamba does not know are ignored, as OpenAI does; each name is logged once."""
    for name in sorted(set(body.model_extra or {}) - _reported_fields):
        _reported_fields.add(name)
        log.warning("ignoring the request field %r, which llamba does not support", name)
    st = state(request)
    if st.draining:
        raise OpenAIError(503, "The server is shutting down; retry on another instance or later.",
                          type="server_error", headers={"Retry-After": "5"})
    if not st.ready:
        raise OpenAIError(503, "The model is still loading.", type="server_error")
    return await st.pool.runner(body.model, getattr(body, "keep_alive", None))


def json_answer(answer: BaseModel) -> JSONResponse:
    """A whole answer of the Responses or Messages API: its fields that are None left out, as theirs are."""
    return JSONResponse(answer.model_dump(mode="json", exclude_none=True))


def head(request: Request, model: str, prefix: str) -> dict:
    """The fields an OpenAI chat or text completion and each of its chunks open with."""
    return dict(id=new_id(prefix), created=now(), model=model, system_fingerprint=state(request).fingerprint)
