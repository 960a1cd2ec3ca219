"""Anthropic's Messages API, as the anthropic SDK and Claude Code use it: `POST /v1/messages` and
`POST /v1/messages/count_tokens`. System text, text / tool_use / tool_result blocks and tools become
the engine's chat turn; app/serving/messages.py builds the answer. Errors on these paths are
Anthropic's shape (app/errors.py)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sse_starlette.sse import EventSourceResponse

from llamba.app.protocol import messages as p
from llamba.app.protocol.common import new_id
from llamba.app.serving import messages as serving
from llamba.app.serving.base import AnswerStream, plan, run_chat

from .common import ERRORS, authorize, generation, json_answer, runner_for

router = APIRouter()


@router.post("/v1/messages", dependencies=[Depends(authorize)], responses=generation(p.Message))
async def create_message(request: Request, body: p.MessageCreateRequest):
    runner = await runner_for(request, body)
    chat, job = run_chat(runner, body.chat(runner.defaults), p.FIELDS)
    answers, head = AnswerStream(runner, job, chat), dict(id=new_id("msg_"), model=body.model)
    if body.stream:
        return EventSourceResponse(serving.stream_events(answers, head), ping=3600)
    return json_answer(serving.message(head, await answers.whole(request)))


@router.post("/v1/messages/count_tokens", dependencies=[Depends(authorize)], responses=ERRORS)
async def count_tokens(request: Request, body: p.CountTokensRequest):
    runner = await runner_for(request, body)
    return {"input_tokens": len(plan(runner, body.turn(), p.FIELDS).prompt_ids)}
