"""OpenAI's Responses API: `POST /v1/responses` (stateless, or continuing a stored response with
`previous_response_id`), `GET` and `DELETE /v1/responses/{id}`. The input items become a chat for
the engine's planner; app/serving/responses.py builds the answer."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from llamba.engine.chat import JSON_OBJECT, Output, plan_chat
from llamba.engine.errors import InvalidRequest
from llamba.app import schemas as s
from llamba.app.errors import OpenAIError, bad_request

from .common import RESPONSES, ERRORS, authorize, collect, note_ignored_fields, runner_for, sdk_serving, state, submit_chat

if TYPE_CHECKING:
    from openai.types.responses import Response

router = APIRouter()
# the engine's concepts, as this API names them
FIELDS = {"prompt": "input", "messages": "input", "max_tokens": "max_output_tokens", "output": "text.format"}


def text_output(body: s.ResponseCreateRequest) -> Output | None:
    fmt = body.text.format if body.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return JSON_OBJECT
    if fmt.schema_ is None:
        raise bad_request("text.format of type json_schema needs a `schema`", param="text.format")
    return Output(json_schema=fmt.schema_)


def add_call(messages: list[dict], call_id: str, name: str, arguments: str) -> None:
    """A tool call joins the assistant's message of calls just before it (calls made together),
    or starts one."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if messages and messages[-1].get("tool_calls"):
        messages[-1]["tool_calls"].append(call)
    else:
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})


def conversation(body: s.ResponseCreateRequest, previous: list[dict]) -> list[dict]:
    """The chat so far as the planner takes it: the previous response's (without its
    instructions, which do not carry over, as OpenAI's), then this request's input items."""
    messages = list(previous)
    names = {c["id"]: c["function"]["name"] for m in previous for c in m.get("tool_calls", [])}
    items = [s.InputMessage(role="user", content=body.input)] if isinstance(body.input, str) else body.input
    for item in items:
        if item.type == "message":
            messages.append({"role": "system" if item.role == "developer" else item.role, "content": item.text()})
        elif item.type == "function_call":
            names[item.call_id] = item.name
            add_call(messages, item.call_id, item.name, item.arguments)
        else:
            messages.append({"role": "tool", "tool_call_id": item.call_id, "name": names.get(item.call_id, ""),
                             "content": item.text()})
    return messages


def as_messages(done: Response) -> list[dict]:
    """A response's output as the assistant's messages, for the next turn."""
    messages = []
    for item in done.output:
        if item.type == "message":
            messages.append({"role": "assistant", "content": "".join(p.text for p in item.content)})
        elif item.status == "completed":  # (a call cut by max_output_tokens has no arguments to give back)
            add_call(messages, item.call_id, item.name, item.arguments)
    return messages


# (the reply's schema, the SDK's `Response`, is put in /openapi.json by app/main.py's describe_models)
@router.post("/v1/responses", dependencies=[Depends(authorize)],
             responses={200: {"content": {"text/event-stream": {}}, "description": "A Response, or its stream"}, **ERRORS})
async def create_response(request: Request, body: s.ResponseCreateRequest):
    runner = await runner_for(request, body.model, body.keep_alive)
    serving = await sdk_serving(RESPONSES)
    note_ignored_fields(body)
    st = state(request)
    previous = []
    if body.previous_response_id:
        kept = st.responses.get(body.previous_response_id)
        if kept is None:
            raise OpenAIError(404, f"Previous response with id '{body.previous_response_id}' not found.",
                              param="previous_response_id", code="previous_response_not_found")
        previous = kept[1]
    history = conversation(body, previous)
    choice = body.tool_choice
    named = isinstance(choice, s.FunctionToolChoice)
    tools = [{"type": "function", "function": t.model_dump(include={"name", "description", "parameters"}, exclude_none=True)}
             for t in body.tools or []]
    instructions = [{"role": "system", "content": body.instructions}] if body.instructions else []
    try:
        plan = plan_chat(runner.loaded, instructions + history, tools, "named" if named else choice,
                         choice.name if named else None, body.parallel_tool_calls, text_output(body))
    except InvalidRequest as e:
        raise bad_request(str(e), param=FIELDS.get(e.param, e.param)) from None
    job = submit_chat(runner, plan, s.sampling_params(runner.defaults, body, body.max_output_tokens), 1, FIELDS)
    head = dict(id=serving.new_id("resp"), created_at=time.time(), model=body.model)

    def keep(done: Response) -> None:
        if body.store:
            st.responses.put(done, history + as_messages(done))
    if body.stream:
        return EventSourceResponse(serving.stream_events(runner, job, plan, body, head, keep), ping=3600)
    events = await collect(runner, job, request)
    done = serving.finished(head, body, job, serving.output_items(plan, "".join(e.text for e in events[0])), events[0])
    keep(done)
    return JSONResponse(done.model_dump(mode="json", exclude_none=True))


def kept(request: Request, response_id: str) -> Response:
    found = state(request).responses.get(response_id)
    if found is None:
        raise OpenAIError(404, f"No response with id '{response_id}' found.", param="response_id", code="not_found")
    return found[0]


@router.get("/v1/responses/{response_id}", dependencies=[Depends(authorize)], responses=ERRORS)
async def get_response(request: Request, response_id: str):
    return JSONResponse(kept(request, response_id).model_dump(mode="json", exclude_none=True))


@router.delete("/v1/responses/{response_id}", dependencies=[Depends(authorize)], responses=ERRORS)
async def delete_response(request: Request, response_id: str):
    kept(request, response_id)
    state(request).responses.delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}
