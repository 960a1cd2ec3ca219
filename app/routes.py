"""The HTTP endpoints: thin glue from OpenAI's requests to the model runners and back."""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sse_starlette.sse import EventSourceResponse

from ..engine.chat_template import TemplateError
from ..engine.scheduler import Job, ModelRunner, QueueFull

from . import schemas as s
from .errors import OpenAIError, bad_request

router = APIRouter()


def state(request: Request):
    return request.app.state.llamba


async def authorize(request: Request) -> None:
    keys = state(request).settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer ") or header[7:] not in keys:
        raise OpenAIError(401, "Incorrect API key provided." if header else "Missing API key: send "
                          "'Authorization: Bearer <key>'.", code="invalid_api_key")


def runner_for(request: Request, model: str | None) -> ModelRunner:
    st = state(request)
    if not st.ready:
        raise OpenAIError(503, "The model is still loading.", type="server_error")
    if model is None:
        return next(iter(st.runners.values()))
    if model not in st.runners:
        raise OpenAIError(404, f"The model '{model}' does not exist.", param="model", code="model_not_found")
    return st.runners[model]


# --- models and health ----------------------------------------------------------------------------
@router.get("/health")
async def health(request: Request):
    ready = state(request).ready
    return JSONResponse({"status": "ok" if ready else "loading"}, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request):
    """Prometheus exposition: requests running and waiting, tokens, prefix-cache hits, latencies."""
    return Response(state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", dependencies=[Depends(authorize)])
async def list_models(request: Request) -> s.ModelList:
    st = state(request)
    return s.ModelList(data=[s.Model(id=m.id, created=st.created) for m in st.settings.models])


@router.get("/v1/models/{model_id}", dependencies=[Depends(authorize)])
async def get_model(request: Request, model_id: str) -> s.Model:
    st = state(request)
    if model_id not in {m.id for m in st.settings.models}:
        raise OpenAIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
    return s.Model(id=model_id, created=st.created)


# --- tokenizer --------------------------------------------------------------------------------------
@router.post("/tokenize", dependencies=[Depends(authorize)])
async def tokenize(request: Request, body: s.TokenizeRequest):
    tok = runner_for(request, body.model).loaded.tokenizer
    return {"tokens": tok.encode(body.content, add_special=body.add_special, parse_special=body.parse_special)}


@router.post("/detokenize", dependencies=[Depends(authorize)])
async def detokenize(request: Request, body: s.DetokenizeRequest):
    tok = runner_for(request, body.model).loaded.tokenizer
    if any(not 0 <= t < tok.vocab_size for t in body.tokens):
        raise bad_request(f"token ids must be in [0, {tok.vocab_size})", param="tokens")
    return {"content": tok.decode(body.tokens)}


# --- generation -------------------------------------------------------------------------------------
def start_job(runner: ModelRunner, prompt_ids: list[int], body: s.SamplingRequest) -> Job:
    if body.n != 1:
        raise bad_request("Only n=1 is supported.", param="n")
    params = body.to_sampling_params()
    vocab = runner.loaded.tokenizer.vocab_size
    if any(not 0 <= t < vocab for t in params.logit_bias):
        raise bad_request(f"logit_bias keys must be token ids in [0, {vocab})", param="logit_bias")
    wanted = len(prompt_ids) + (params.max_tokens or 1)
    if not prompt_ids:
        raise bad_request("The prompt is empty.", param="prompt")
    if wanted > runner.n_ctx:
        raise bad_request(f"This model's context is {runner.n_ctx} tokens; the request needs {wanted} "
                          f"({len(prompt_ids)} in the prompt, {params.max_tokens or 1} to generate).",
                          param="messages" if isinstance(body, s.ChatCompletionRequest) else "prompt",
                          code="context_length_exceeded")
    try:
        return runner.submit(prompt_ids, params)
    except QueueFull as e:
        raise OpenAIError(429, f"Too many requests: {e}. Retry shortly.", type="rate_limit_exceeded",
                          code="rate_limit_exceeded", headers={"Retry-After": "1"}) from None


async def collect(runner: ModelRunner, job: Job, request: Request) -> list:
    """All of a job's events; stops the job if the client goes away first."""
    async def watch():
        while not job.cancelled.is_set():
            if await request.is_disconnected():
                job.cancel()
                return
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    try:
        return [event async for event in runner.stream(job)]
    finally:
        watcher.cancel()


def token_text(tok, token_id: int, as_ids: bool) -> str:
    return f"token_id:{token_id}" if as_ids else tok.token_bytes(token_id).decode("utf-8", errors="replace")


def chat_logprobs(tok, events, as_ids: bool) -> s.ChoiceLogprobs:
    def entry(token_id, logprob):
        return dict(token=token_text(tok, token_id, as_ids), logprob=logprob, bytes=list(tok.token_bytes(token_id)))
    return s.ChoiceLogprobs(content=[
        s.ChatCompletionTokenLogprob(**entry(e.token_id, e.logprob),
                                     top_logprobs=[s.TopLogprob(**entry(i, lp)) for i, lp in e.top_logprobs])
        for e in events])


def usage(prompt_tokens: int, completion_tokens: int, jobs: list[Job]) -> s.Usage:
    return s.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens,
                   prompt_tokens_details=s.PromptTokensDetails(cached_tokens=sum(j.cached_tokens for j in jobs)))


@router.post("/v1/chat/completions", dependencies=[Depends(authorize)])
async def chat_completions(request: Request, body: s.ChatCompletionRequest):
    runner = runner_for(request, body.model)
    lm = runner.loaded
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    try:
        prompt_ids = lm.chat_prompt_ids(messages, tools=body.tools)
    except TemplateError as e:
        raise bad_request(str(e), param="messages") from None
    job = start_job(runner, prompt_ids, body)
    want_logprobs = body.logprobs
    rid, created = s.new_id("chatcmpl"), s.now()

    if not body.stream:
        events = await collect(runner, job, request)
        return s.ChatCompletion(
            id=rid, created=created, model=body.model,
            choices=[s.Choice(index=0, message=s.ChatCompletionMessage(content="".join(e.text for e in events)),
                              logprobs=chat_logprobs(lm.tokenizer, events, body.return_tokens_as_token_ids) if want_logprobs else None,
                              finish_reason=events[-1].finish_reason if events else "stop")],
            usage=usage(len(prompt_ids), len(events), [job]))

    def chunk(delta: s.ChoiceDelta, events=(), finish=None) -> dict:
        lp = chat_logprobs(lm.tokenizer, events, body.return_tokens_as_token_ids) if want_logprobs and events else None
        return {"data": s.ChatCompletionChunk(id=rid, created=created, model=body.model, choices=[
            s.ChunkChoice(index=0, delta=delta, logprobs=lp, finish_reason=finish)]).model_dump_json()}

    async def stream():
        n = 0
        yield chunk(s.ChoiceDelta(role="assistant", content=""))
        async for event in runner.stream(job):
            n += 1
            yield chunk(s.ChoiceDelta(content=event.text), [event], event.finish_reason)
        if body.stream_options and body.stream_options.include_usage:
            yield {"data": s.ChatCompletionChunk(id=rid, created=created, model=body.model, choices=[],
                                                 usage=usage(len(prompt_ids), n, [job])).model_dump_json()}
        yield {"data": "[DONE]"}

    return EventSourceResponse(stream(), ping=3600)


def completion_prompts(body: s.CompletionRequest, tok) -> list[list[int]]:
    p = body.prompt
    if isinstance(p, str):
        return [tok.encode(p, add_special=True, parse_special=True)]
    if p and all(isinstance(x, int) for x in p):
        return [list(p)]
    return [tok.encode(x, add_special=True, parse_special=True) if isinstance(x, str) else list(x) for x in p]


def completion_logprobs(tok, events, as_ids: bool, start: int = 0) -> s.CompletionLogprobs:
    out, offset = s.CompletionLogprobs(), start
    for e in events:
        out.tokens.append(token_text(tok, e.token_id, as_ids))
        out.token_logprobs.append(e.logprob)
        out.top_logprobs.append({token_text(tok, i, as_ids): lp for i, lp in e.top_logprobs})
        out.text_offset.append(offset)
        offset += len(e.text)
    return out


@router.post("/v1/completions", dependencies=[Depends(authorize)])
async def completions(request: Request, body: s.CompletionRequest):
    runner = runner_for(request, body.model)
    tok = runner.loaded.tokenizer
    prompts = completion_prompts(body, tok)
    if not prompts:
        raise bad_request("The prompt is empty.", param="prompt")
    if any(not 0 <= t < tok.vocab_size for ids in prompts for t in ids):
        raise bad_request(f"prompt token ids must be in [0, {tok.vocab_size})", param="prompt")
    rid, created = s.new_id("cmpl"), s.now()
    as_ids, want_logprobs = body.return_tokens_as_token_ids, body.logprobs is not None

    if not body.stream:
        choices, completion_tokens, jobs = [], 0, []
        for index, ids in enumerate(prompts):
            jobs.append(start_job(runner, ids, body))
            events = await collect(runner, jobs[-1], request)
            completion_tokens += len(events)
            echo = tok.decode(ids) if body.echo else ""
            choices.append(s.CompletionChoice(
                index=index, text=echo + "".join(e.text for e in events),
                logprobs=completion_logprobs(tok, events, as_ids, len(echo)) if want_logprobs else None,
                finish_reason=events[-1].finish_reason if events else "stop"))
        return s.Completion(id=rid, created=created, model=body.model, choices=choices,
                            usage=usage(sum(map(len, prompts)), completion_tokens, jobs))

    first_job = start_job(runner, prompts[0], body)  # errors (context, queue) before the stream starts

    async def stream():
        completion_tokens, jobs = 0, []
        for index, ids in enumerate(prompts):
            job = first_job if index == 0 else start_job(runner, ids, body)
            jobs.append(job)
            async for e in runner.stream(job):
                completion_tokens += 1
                choice = s.CompletionChoice(index=index, text=e.text, finish_reason=e.finish_reason,
                                            logprobs=completion_logprobs(tok, [e], as_ids) if want_logprobs else None)
                yield {"data": s.Completion(id=rid, created=created, model=body.model, choices=[choice]).model_dump_json()}
        if body.stream_options and body.stream_options.include_usage:
            yield {"data": json.dumps({"id": rid, "object": "text_completion", "created": created, "model": body.model,
                                       "choices": [], "usage": usage(sum(map(len, prompts)), completion_tokens, jobs).model_dump()})}
        yield {"data": "[DONE]"}

    return EventSourceResponse(stream(), ping=3600)
