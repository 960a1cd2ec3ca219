"""OpenAI's Responses API: `POST /v1/responses` (stateless, or continuing a stored response with
`previous_response_id`), `GET` and `DELETE /v1/responses/{id}`. The input items become the engine's
chat turn; app/serving/responses.py builds the answer."""
from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from sse_starlette.sse import EventSourceResponse

from llamba.app.errors import OpenAIError
from llamba.app.protocol import responses as p
from llamba.app.protocol.common import new_id
from llamba.app.serving import responses as serving
from llamba.app.serving.base import AnswerStream, plan, run_chat

from .common import ERRORS, authorize, generation, json_answer, runner_for, state

router = APIRouter()


@router.post("/v1/responses", dependencies=[Depends(authorize)], responses=generation(p.Response))
async def create_response(request: Request, body: p.ResponseCreateRequest):
    runner = await runner_for(request, body)
    st = state(request)
    history = conversation(request, body)
    plan, job = run_chat(runner, body.chat(runner.defaults, history), p.FIELDS)
    answers, head = AnswerStream(runner, job, plan), dict(id=new_id("resp_"), created_at=time.time(), model=body.model)

    def keep(done: p.Response) -> None:
        if body.store:
            st.responses.put(done, history + serving.as_messages(done))
    if body.stream:
        return EventSourceResponse(serving.stream_events(answers, body, head, keep), ping=3600)
    done = serving.finished(head, body, await answers.whole(request), {})
    keep(done)
    return json_answer(done)


@router.post("/v1/responses/render", dependencies=[Depends(authorize)], responses=ERRORS)
async def render_response(request: Request, body: p.ResponseCreateRequest) -> dict:
    """The token ids of the prompt this request would run (vLLM's render endpoint: vllm-router's
    cache-aware policy asks each replica for them)."""
    runner = await runner_for(request, body)
    return {"token_ids": plan(runner, body.chat(runner.defaults, conversation(request, body)), p.FIELDS).prompt_ids}


def conversation(request: Request, body: p.ResponseCreateRequest) -> list[dict]:
    """The request's input after the stored conversation it continues (previous_response_id)."""
    previous = []
    if body.previous_response_id:
        kept = state(request).responses.get(body.previous_response_id)
        if kept is None:
            raise OpenAIError(404, f"Previous response with id '{body.previous_response_id}' not found.",
                              param="previous_response_id", code="previous_response_not_found")
        previous = kept[1]
    return serving.conversation(body, previous)


def kept(request: Request, response_id: str) -> p.Response:
    found = state(request).responses.get(response_id)
    if found is None:
        raise OpenAIError(404, f"No response with id '{response_id}' found.", param="response_id", code="not_found")
    return found[0]


@router.get("/v1/responses/{response_id}", dependencies=[Depends(authorize)], responses=ERRORS)
async def get_response(request: Request, response_id: str):
    return json_answer(kept(request, response_id))


@router.delete("/v1/responses/{response_id}", dependencies=[Depends(authorize)], responses=ERRORS)
async def delete_response(request: Request, response_id: str):
    kept(request, response_id)
    state(request).responses.delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}
