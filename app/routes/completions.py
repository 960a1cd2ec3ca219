"""OpenAI's generation endpoints, `POST /v1/chat/completions` and `POST /v1/completions`: each turns
its request into the engine's terms (a chat turn, or prompts and sampling), submits one job, and
answers with serving/completions.py's whole response or stream."""
from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Depends, Request
from sse_starlette.sse import EventSourceResponse

from llamba.app.errors import bad_request
from llamba.app.protocol import completions as p
from llamba.app.serving import completions as serving
from llamba.app.serving.base import AnswerStream, plan, refusals, run_chat, submit, token_lists

from .common import ERRORS, authorize, generation, head, runner_for

router = APIRouter()


@router.post("/v1/chat/completions", dependencies=[Depends(authorize)], responses=generation(p.ChatCompletion))
async def chat_completions(request: Request, body: p.ChatCompletionRequest):
    runner = await runner_for(request, body)
    plan, job = run_chat(runner, body.chat(runner.defaults), body.fields())
    answers, tok, first = AnswerStream(runner, job, plan), runner.loaded.tokenizer, head(request, body.model, "chatcmpl-")
    if body.stream:
        return EventSourceResponse(serving.chat_chunks(answers, tok, body, first), ping=3600)
    return serving.chat_completion(await answers.whole(request), tok, body, first)


@router.post("/v1/chat/completions/render", dependencies=[Depends(authorize)], responses=ERRORS)
async def render_chat(request: Request, body: p.ChatCompletionRequest) -> dict:
    """The token ids of the exact prompt this request would run: its template, tools and output
    format (vLLM's render endpoint: vllm-router's cache-aware policy asks each replica for them)."""
    runner = await runner_for(request, body)
    return {"token_ids": plan(runner, body.chat(runner.defaults), body.fields()).prompt_ids}


@router.post("/v1/completions/render", dependencies=[Depends(authorize)], responses=ERRORS)
async def render_completion(request: Request, body: p.CompletionRequest) -> list[dict]:
    """Each prompt's token ids, as /v1/completions would run them (vLLM's render endpoint)."""
    runner = await runner_for(request, body)
    return [{"token_ids": ids} for ids in token_lists(body.prompt, runner.loaded.tokenizer, parse_special=True)]


@router.post("/v1/completions", dependencies=[Depends(authorize)], responses=generation(p.Completion))
async def completions(request: Request, body: p.CompletionRequest):
    runner = await runner_for(request, body)
    if body.suffix:
        raise bad_request("suffix (fill-in-the-middle) is not supported.", param="suffix")
    fields = {"output": body.output_field(), "grammar": body.output_field()}
    with refusals(fields):
        output = body.output()
        params = replace(body.to_sampling_params(runner.defaults), grammar=output.grammar() if output else None)
    prompts = token_lists(body.prompt, runner.loaded.tokenizer, parse_special=True)
    job = submit(runner, prompts, params, body.n, fields)  # one batched job
    answers, tok, first = AnswerStream(runner, job), runner.loaded.tokenizer, head(request, body.model, "cmpl-")
    if body.stream:
        return EventSourceResponse(serving.completion_chunks(answers, tok, body, first), ping=3600)
    return serving.completion(await answers.whole(request), tok, body, first)
