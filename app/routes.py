"""The HTTP endpoints: thin glue from OpenAI's requests to the model runners and back.

Each generation endpoint turns its request into prompts and sampling parameters, submits them as
one job (so errors, a full queue included, are answered before any streaming starts), then
answers with one of two named functions: the whole response, or a stream of chunks."""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections import defaultdict
from dataclasses import replace

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sse_starlette.sse import EventSourceResponse

from llamba.engine.errors import InvalidRequest
from llamba.engine.scheduler import Job, ModelRunner, QueueFull

from . import schemas as s
from .errors import OpenAIError, bad_request
from .structured import ChatPlan, output_grammar, plan_chat, tool_call_message

router = APIRouter()
log = logging.getLogger("llamba")
# the error answers, in OpenAI's shape, as the OpenAPI document describes them
ERRORS = {status: {"model": s.ErrorResponse, "description": text} for status, text in (
    (400, "Invalid request"), (401, "Missing or wrong API key"), (404, "No such model"),
    (413, "Request body too large"), (429, "The model's queue is full"),
    (503, "Loading, or shutting down"))}


def generation(reply: type) -> dict:
    """A generation endpoint's answers: the whole reply as JSON, or a stream of its chunks."""
    return {200: {"model": reply, "content": {"text/event-stream": {}}}, **ERRORS}
_reported_fields: set[str] = set()


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
    if not header.startswith("Bearer ") or not key_is_valid(header[7:], keys):
        raise OpenAIError(401, "Incorrect API key provided." if header else "Missing API key: send "
                          "'Authorization: Bearer <key>'.", code="invalid_api_key")


def runner_for(request: Request, model: str | None) -> ModelRunner:
    st = state(request)
    if st.draining:
        raise OpenAIError(503, "The server is shutting down; retry on another instance or later.",
                          type="server_error", headers={"Retry-After": "5"})
    if not st.ready:
        raise OpenAIError(503, "The model is still loading.", type="server_error")
    if model is None:
        return next(iter(st.runners.values()))
    if model not in st.runners:
        raise OpenAIError(404, f"The model '{model}' does not exist.", param="model", code="model_not_found")
    return st.runners[model]


def note_ignored_fields(body: s.OpenAIModel) -> None:
    """Fields this server does not know are ignored, as OpenAI does; each name is logged once."""
    for name in sorted(set(body.model_extra or {}) - _reported_fields):
        _reported_fields.add(name)
        log.warning("ignoring the request field %r, which llamba does not support", name)


# --- models and health ----------------------------------------------------------------------------
@router.get("/health", responses={503: {"description": "Loading, or shutting down"}})
async def health(request: Request):
    st = state(request)
    status = "draining" if st.draining else "ok" if st.ready else "loading"
    return JSONResponse({"status": status}, status_code=200 if status == "ok" else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}, 401: ERRORS[401]})
async def metrics(request: Request):
    """Prometheus exposition: requests running and waiting, tokens, prefix-cache hits, latencies."""
    if state(request).settings.metrics_need_key:
        await authorize(request)
    return Response(state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


def model_card(request: Request, model_id: str) -> s.Model:
    st = state(request)
    runner = st.runners.get(model_id)
    meta = None
    if runner is not None:
        d = runner.defaults
        meta = s.ModelMeta(context_length=runner.n_ctx, parallel=runner.parallel, sampling_defaults=s.SamplingDefaults(
            temperature=d.temperature, top_k=d.top_k, top_p=d.top_p, min_p=d.min_p,
            repeat_penalty=d.repeat_penalty, max_tokens=d.max_tokens))
    return s.Model(id=model_id, created=st.created, meta=meta)


@router.get("/v1/models", dependencies=[Depends(authorize)], responses=ERRORS)
async def list_models(request: Request) -> s.ModelList:
    return s.ModelList(data=[model_card(request, i) for i in state(request).model_ids])


@router.get("/v1/models/{model_id}", dependencies=[Depends(authorize)], responses=ERRORS)
async def get_model(request: Request, model_id: str) -> s.Model:
    if model_id not in state(request).model_ids:
        raise OpenAIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
    return model_card(request, model_id)


# --- tokenizer --------------------------------------------------------------------------------------
@router.post("/tokenize", dependencies=[Depends(authorize)], responses=ERRORS)
async def tokenize(request: Request, body: s.TokenizeRequest):
    tok = runner_for(request, body.model).loaded.tokenizer
    return {"tokens": tok.encode(body.content, add_special=body.add_special, parse_special=body.parse_special)}


@router.post("/detokenize", dependencies=[Depends(authorize)], responses=ERRORS)
async def detokenize(request: Request, body: s.DetokenizeRequest):
    runner = runner_for(request, body.model)
    try:
        runner.loaded.model.check_tokens(body.tokens)
    except InvalidRequest as e:
        raise bad_request(str(e), param="tokens") from None
    return {"content": runner.loaded.tokenizer.decode(body.tokens)}


# --- generation -------------------------------------------------------------------------------------
def submit(runner: ModelRunner, prompts: list[list[int]], body: s.SamplingRequest, prompt_param: str,
           grammar: str | None = None, triggers: tuple[str, ...] = (), grammar_param: str = "grammar") -> Job:
    """Check a request (the engine's rules, and OpenAI's: an explicit max_tokens must fit in the
    context) and queue it as one job; the engine's names of fields at fault become the request's."""
    note_ignored_fields(body)
    params = replace(body.to_sampling_params(runner.defaults), grammar=grammar, grammar_triggers=triggers)
    limit = body.output_limit()
    for ids in prompts:
        if limit is not None and len(ids) + limit > runner.n_ctx:
            raise bad_request(f"This model's context is {runner.n_ctx} tokens; the request needs {len(ids) + limit} "
                              f"({len(ids)} in the prompt, {limit} to generate).", param=prompt_param,
                              code="context_length_exceeded")
    try:
        return runner.submit(prompts, params, n=body.n)
    except InvalidRequest as e:
        param = {"prompt": prompt_param, "grammar": grammar_param}.get(e.param, e.param)
        raise bad_request(str(e), param=param, code=e.code) from None
    except QueueFull as e:
        raise OpenAIError(429, f"Too many requests: {e}. Retry shortly.", type="rate_limit_exceeded",
                          code="rate_limit_exceeded", headers={"Retry-After": "1"}) from None


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


def token_text(tok, token_id: int, as_ids: bool) -> str:
    return f"token_id:{token_id}" if as_ids else tok.token_bytes(token_id).decode("utf-8", errors="replace")


def chat_logprobs(tok, events, as_ids: bool) -> s.ChoiceLogprobs:
    def entry(token_id, logprob):
        return dict(token=token_text(tok, token_id, as_ids), logprob=logprob, bytes=list(tok.token_bytes(token_id)))
    return s.ChoiceLogprobs(content=[
        s.ChatCompletionTokenLogprob(**entry(e.token_id, e.logprob),
                                     top_logprobs=[s.TopLogprob(**entry(i, lp)) for i, lp in e.top_logprobs])
        for e in events])


def completion_logprobs(tok, events, as_ids: bool, start: int = 0) -> s.CompletionLogprobs:
    out, offset = s.CompletionLogprobs(), start
    for e in events:
        out.tokens.append(token_text(tok, e.token_id, as_ids))
        out.token_logprobs.append(e.logprob)
        out.top_logprobs.append({token_text(tok, i, as_ids): lp for i, lp in e.top_logprobs})
        out.text_offset.append(offset)
        offset += len(e.text)
    return out


def usage(job: Job, completion_tokens: int) -> s.Usage:
    prompt_tokens = sum(map(len, job.prompts))
    return s.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens,
                   prompt_tokens_details=s.PromptTokensDetails(cached_tokens=job.cached_tokens))


def sse(response) -> dict:
    return {"data": response.model_dump_json()}


DONE = {"data": "[DONE]"}


# --- chat completions -------------------------------------------------------------------------------
@router.post("/v1/chat/completions", dependencies=[Depends(authorize)], responses=generation(s.ChatCompletion))
async def chat_completions(request: Request, body: s.ChatCompletionRequest):
    runner = runner_for(request, body.model)
    try:
        plan = plan_chat(body, runner.loaded)
        prompt_ids = runner.loaded.chat_prompt_ids(plan.messages, tools=plan.tools)
    except InvalidRequest as e:
        raise bad_request(str(e), param=e.param or "messages") from None
    job = submit(runner, [prompt_ids], body, "messages", plan.grammar, plan.triggers, plan.grammar_param)
    reply = s.ChatCompletion if not body.stream else s.ChatCompletionChunk
    head = dict(id=s.new_id("chatcmpl"), created=s.now(), model=body.model,
                system_fingerprint=state(request).fingerprint)
    if body.stream:
        return EventSourceResponse(chat_stream(runner, job, body, plan, reply, head), ping=3600)
    return await chat_response(runner, job, body, plan, head, request)


def finish_reason(message: s.ChatCompletionMessage, events) -> str:
    reason = events[-1].finish_reason if events else "stop"
    return "tool_calls" if message.tool_calls and reason != "length" else reason


async def chat_response(runner: ModelRunner, job: Job, body: s.ChatCompletionRequest, plan: ChatPlan,
                        head: dict, request: Request) -> s.ChatCompletion:
    tok, as_ids = runner.loaded.tokenizer, body.return_tokens_as_token_ids
    events = await collect(runner, job, request)
    choices = []
    for i in range(job.choices):
        message = tool_call_message("".join(e.text for e in events[i]), plan.tool_format)
        choices.append(s.Choice(index=i, message=message, finish_reason=finish_reason(message, events[i]),
                                logprobs=chat_logprobs(tok, events[i], as_ids) if body.logprobs else None))
    return s.ChatCompletion(**head, choices=choices, usage=usage(job, sum(map(len, events.values()))))


async def chat_stream(runner: ModelRunner, job: Job, body: s.ChatCompletionRequest, plan: ChatPlan, reply,
                      head: dict):
    """A chunk with the role for each choice, a chunk per token, then a chunk with an empty delta
    and the finish reason for each choice; the usage if asked; [DONE]. Where tool calls may come,
    a choice's output is read whole: its text in one chunk, or each call in two (its id, type
    and name, then its arguments)."""
    tok, as_ids = runner.loaded.tokenizer, body.return_tokens_as_token_ids

    def chunk(index: int, delta: s.ChoiceDelta, events=(), finish=None) -> dict:
        logprobs = chat_logprobs(tok, events, as_ids) if body.logprobs and events else None
        return sse(reply(**head, choices=[s.ChunkChoice(index=index, delta=delta, logprobs=logprobs,
                                                        finish_reason=finish)]))

    for i in range(job.choices):
        yield chunk(i, s.ChoiceDelta(role="assistant", content=""))
    generated, held = 0, defaultdict(list)
    async for event in runner.stream(job):
        generated += 1
        if plan.tool_format:
            held[event.index].append(event)
        elif event.text or body.logprobs:
            yield chunk(event.index, s.ChoiceDelta(content=event.text), [event])
        if not event.finish_reason:
            continue
        if plan.tool_format:
            events = held.pop(event.index)
            message = tool_call_message("".join(e.text for e in events), plan.tool_format)
            for k, call in enumerate(message.tool_calls or []):
                yield chunk(event.index, s.ChoiceDelta(tool_calls=[s.ToolCallDelta(
                    index=k, id=call.id, type="function", function=s.FunctionCallDelta(name=call.function.name,
                                                                                      arguments=""))]))
                yield chunk(event.index, s.ChoiceDelta(tool_calls=[s.ToolCallDelta(
                    index=k, function=s.FunctionCallDelta(arguments=call.function.arguments))]))
            if message.content:
                yield chunk(event.index, s.ChoiceDelta(content=message.content), events)
            yield chunk(event.index, s.ChoiceDelta(), finish=finish_reason(message, events))
        else:
            yield chunk(event.index, s.ChoiceDelta(), finish=event.finish_reason)
    if body.stream_options and body.stream_options.include_usage:
        yield sse(reply(**head, choices=[], usage=usage(job, generated)))
    yield DONE


# --- text completions -------------------------------------------------------------------------------
def completion_prompts(body: s.CompletionRequest, tok) -> list[list[int]]:
    p = body.prompt
    if isinstance(p, str):
        return [tok.encode(p, add_special=True, parse_special=True)]
    if p and all(isinstance(x, int) for x in p):
        return [list(p)]
    return [tok.encode(x, add_special=True, parse_special=True) if isinstance(x, str) else list(x) for x in p]


@router.post("/v1/completions", dependencies=[Depends(authorize)], responses=generation(s.Completion))
async def completions(request: Request, body: s.CompletionRequest):
    runner = runner_for(request, body.model)
    if body.suffix:
        raise bad_request("suffix (fill-in-the-middle) is not supported by Llama models.", param="suffix")
    prompts = completion_prompts(body, runner.loaded.tokenizer)
    grammar, grammar_param = output_grammar(body)  # (an InvalidRequest is a 400, app/errors.py)
    job = submit(runner, prompts, body, "prompt", grammar, grammar_param=grammar_param)  # one batched job
    head = dict(id=s.new_id("cmpl"), created=s.now(), model=body.model,
                system_fingerprint=state(request).fingerprint)
    if body.stream:
        return EventSourceResponse(completion_stream(runner, job, body, head), ping=3600)
    return await completion_response(runner, job, body, head, request)


def echo_text(tok, job: Job, index: int, echo: bool) -> str:
    return tok.decode(job.prompts[index // job.n]) if echo else ""


async def completion_response(runner: ModelRunner, job: Job, body: s.CompletionRequest, head: dict,
                              request: Request) -> s.Completion:
    tok, as_ids = runner.loaded.tokenizer, body.return_tokens_as_token_ids
    events = await collect(runner, job, request)
    choices = []
    for i in range(job.choices):
        echo = echo_text(tok, job, i, body.echo)
        choices.append(s.CompletionChoice(
            index=i, text=echo + "".join(e.text for e in events[i]),
            logprobs=completion_logprobs(tok, events[i], as_ids, len(echo)) if body.logprobs is not None else None,
            finish_reason=events[i][-1].finish_reason if events[i] else "stop"))
    return s.Completion(**head, choices=choices, usage=usage(job, sum(map(len, events.values()))))


async def completion_stream(runner: ModelRunner, job: Job, body: s.CompletionRequest, head: dict):
    """The echoed prompt if asked, a chunk per token, a final chunk with the finish reason for
    each choice; the usage if asked; [DONE]."""
    tok, as_ids = runner.loaded.tokenizer, body.return_tokens_as_token_ids

    def chunk(index: int, text: str, events=(), finish=None) -> dict:
        logprobs = completion_logprobs(tok, events, as_ids) if body.logprobs is not None and events else None
        return sse(s.Completion(**head, choices=[s.CompletionChoice(index=index, text=text, logprobs=logprobs,
                                                                    finish_reason=finish)]))

    if body.echo:
        for i in range(job.choices):
            yield chunk(i, echo_text(tok, job, i, True))
    generated = 0
    async for event in runner.stream(job):
        generated += 1
        if event.text or body.logprobs is not None:
            yield chunk(event.index, event.text, [event])
        if event.finish_reason:
            yield chunk(event.index, "", finish=event.finish_reason)
    if body.stream_options and body.stream_options.include_usage:
        yield {"data": json.dumps({**head, "object": "text_completion", "choices": [],
                                   "usage": usage(job, generated).model_dump()})}
    yield DONE
