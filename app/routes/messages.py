"""Anthropic's Messages API, as the anthropic SDK and Claude Code use it: `POST /v1/messages` and
`POST /v1/messages/count_tokens`. System text, text / tool_use / tool_result blocks and tools become
a chat for the engine's planner; app/serving/messages.py builds the answer. Errors on these paths
are Anthropic's shape (app/errors.py)."""
from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from llamba.engine.chat import ChatPlan, plan_chat
from llamba.engine.errors import InvalidRequest
from llamba.app import schemas_anthropic as a
from llamba.app.errors import bad_request
from llamba.app.schemas import sampling_params

from .common import ERRORS, MESSAGES, authorize, collect, note_ignored_fields, runner_for, sdk_serving, submit_chat

router = APIRouter()
# the engine's concepts, as this API names them
FIELDS = {"prompt": "messages", "output": "tools", "grammar": "tools"}
TOOL_CHOICES = {"auto": "auto", "any": "required", "tool": "named", "none": "none"}


def conversation(body: a.CountTokensRequest) -> list[dict]:
    """The chat as the planner takes it: the system text, then each message, a user's tool
    results as tool messages before its words, an assistant's tool uses as its calls."""
    messages = [{"role": "system", "content": body.system_text()}] if body.system else []
    names = {}  # tool_use id -> tool name
    for m in body.messages:
        blocks = [a.TextBlockParam(type="text", text=m.content)] if isinstance(m.content, str) else m.content
        text = "".join(b.text for b in blocks if b.type == "text")
        calls = [{"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.input}}
                 for b in blocks if b.type == "tool_use"]
        names.update((c["id"], c["function"]["name"]) for c in calls)
        for b in blocks:
            if b.type == "tool_result":
                messages.append({"role": "tool", "tool_call_id": b.tool_use_id, "name": names.get(b.tool_use_id, ""),
                                 "content": b.text()})
        if text or calls or not any(b.type == "tool_result" for b in blocks):
            messages.append({"role": m.role, "content": text, **({"tool_calls": calls} if calls else {})})
    return messages


def plan(runner, body: a.CountTokensRequest) -> ChatPlan:
    tools = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                "parameters": t.input_schema}} for t in body.tools or []]
    choice = body.tool_choice
    try:
        return plan_chat(runner.loaded, conversation(body), tools, TOOL_CHOICES[choice.type] if choice else None,
                         choice.name if choice else None, not (choice and choice.disable_parallel_tool_use))
    except InvalidRequest as e:
        raise bad_request(str(e), param=FIELDS.get(e.param, e.param)) from None


@router.post("/v1/messages", dependencies=[Depends(authorize)],
             responses={200: {"content": {"text/event-stream": {}}, "description": "A Message, or its stream"}, **ERRORS})
async def create_message(request: Request, body: a.MessageCreateRequest):
    runner = await runner_for(request, body.model, body.keep_alive)
    serving = await sdk_serving(MESSAGES)
    note_ignored_fields(body)
    chat = plan(runner, body)
    params = replace(sampling_params(runner.defaults, body, body.max_tokens), stop=body.stop_sequences or [])
    job = submit_chat(runner, chat, params, 1, FIELDS)
    head = dict(id=serving.new_id("msg"), model=body.model)
    if body.stream:
        return EventSourceResponse(serving.stream_events(runner, job, chat, head), ping=3600)
    events = await collect(runner, job, request)
    return JSONResponse(serving.message(head, job, serving.read(chat, events[0]), events[0]).model_dump(mode="json", exclude_none=True))


@router.post("/v1/messages/count_tokens", dependencies=[Depends(authorize)], responses=ERRORS)
async def count_tokens(request: Request, body: a.CountTokensRequest):
    return {"input_tokens": len(plan(await runner_for(request, body.model), body).prompt_ids)}
