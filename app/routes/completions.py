"""OpenAI's generation endpoints, `POST /v1/chat/completions` and `POST /v1/completions`: each checks
its request, turns it into prompts (a chat through the engine's planner) and sampling parameters,
submits one job, and answers with serving/completions.py's whole response or stream."""
from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Depends, Request
from sse_starlette.sse import EventSourceResponse

from llamba.engine.chat import JSON_OBJECT, Output, plan_chat
from llamba.engine.errors import InvalidRequest
from llamba.app import schemas as s
from llamba.app.errors import bad_request
from llamba.app.serving import completions as serving

from .common import (authorize, collect, generation, note_ignored_fields, runner_for, state, submit, submit_chat,
                     token_lists)

router = APIRouter()


def output_format(body: s.ChatCompletionRequest | s.CompletionRequest) -> tuple[Output | None, str]:
    """What the answer must be, from `response_format` (chat) or llama-server's `json_schema` and
    `grammar` (both endpoints), and the field it comes from."""
    # (a completions request's extra fields are attributes too: only chat has response_format)
    fmt = body.response_format if isinstance(body, s.ChatCompletionRequest) else None
    if fmt is not None and fmt.type == "json_object":
        return JSON_OBJECT, "response_format"
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise bad_request("response_format json_schema needs a `json_schema.schema`", param="response_format")
        return Output(json_schema=fmt.json_schema.schema_), "response_format"
    if body.json_schema is not None:
        return Output(json_schema=body.json_schema), "json_schema"
    if body.grammar is not None:
        return Output(lark=body.grammar), "grammar"
    return None, "grammar"


def head(request: Request, body: s.SamplingRequest, prefix: str) -> dict:
    """The fields every response and chunk of a request repeats."""
    return dict(id=s.new_id(prefix), created=s.now(), model=body.model, system_fingerprint=state(request).fingerprint)


@router.post("/v1/chat/completions", dependencies=[Depends(authorize)], responses=generation(s.ChatCompletion))
async def chat_completions(request: Request, body: s.ChatCompletionRequest):
    runner = await runner_for(request, body.model, body.keep_alive)
    note_ignored_fields(body)
    output, output_field = output_format(body)
    choice = body.tool_choice
    named = isinstance(choice, s.NamedToolChoice)
    fields = {"prompt": "messages", "output": output_field,
              "max_tokens": "max_completion_tokens" if body.max_completion_tokens else "max_tokens"}
    try:
        plan = plan_chat(runner.loaded, [m.for_template() for m in body.messages],
                         [t.model_dump(exclude_none=True) for t in body.tools or []],
                         "named" if named else choice, choice.function.name if named else None,
                         body.parallel_tool_calls, output)
    except InvalidRequest as e:
        raise bad_request(str(e), param=fields.get(e.param, e.param)) from None
    job = submit_chat(runner, plan, body.to_sampling_params(runner.defaults), body.n, fields)
    first = head(request, body, "chatcmpl")
    if body.stream:
        return EventSourceResponse(serving.chat_chunks(runner, job, plan, body, first), ping=3600)
    events = await collect(runner, job, request)
    return serving.chat_completion(job, events, plan, runner.loaded.tokenizer, body, first)


@router.post("/v1/completions", dependencies=[Depends(authorize)], responses=generation(s.Completion))
async def completions(request: Request, body: s.CompletionRequest):
    runner = await runner_for(request, body.model, body.keep_alive)
    note_ignored_fields(body)
    if body.suffix:
        raise bad_request("suffix (fill-in-the-middle) is not supported by Llama models.", param="suffix")
    output, output_field = output_format(body)
    try:
        grammar = output.grammar() if output else None
    except InvalidRequest as e:
        raise bad_request(str(e), param=output_field) from None
    params = replace(body.to_sampling_params(runner.defaults), grammar=grammar)
    job = submit(runner, token_lists(body.prompt, runner.loaded.tokenizer, parse_special=True), params, body.n,  # one batched job
                 {"output": output_field, "grammar": output_field})
    first = head(request, body, "cmpl")
    if body.stream:
        return EventSourceResponse(serving.completion_chunks(runner, job, body, first), ping=3600)
    events = await collect(runner, job, request)
    return serving.completion(job, events, runner.loaded.tokenizer, body, first)
