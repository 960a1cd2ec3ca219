"""The server's own endpoints: health, metrics, the models it serves, and llama-server's
tokenizer endpoints."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from llamba.engine.errors import InvalidRequest
from llamba.engine.sampling import TUNABLE
from llamba.app.protocol import server as s
from llamba.app.protocol.completions import ChatCompletionRequest
from llamba.app.errors import bad_request
from llamba.app.serving.base import plan

from .common import ERRORS, authorize, runner_for, state

router = APIRouter()


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
    """(Reads an unloaded model's header: call it in a worker thread, off the event loop.)"""
    st = state(request)
    model = st.pool.find(model_id)
    runner = model.runner
    if runner is None:
        meta = s.ModelMeta(loaded=False, **model.header())
    else:
        meta = s.ModelMeta(loaded=True, context_length=runner.n_ctx, size_bytes=model.size(),
                           parallel=runner.parallel, sampling_defaults=s.SamplingDefaults(
                               **{name: getattr(runner.defaults, name) for name in TUNABLE}))
    return s.Model(id=model_id, created=st.created, meta=meta)


@router.get("/v1/models", dependencies=[Depends(authorize)], responses=ERRORS)
async def list_models(request: Request) -> s.ModelList:
    pool = state(request).pool

    def cards():  # (rescanning the folder and reading headers: off the event loop)
        pool.rescan()
        return [model_card(request, i) for i in pool.ids]
    return s.ModelList(data=await asyncio.to_thread(cards))


@router.get("/v1/models/{model_id}", dependencies=[Depends(authorize)], responses=ERRORS)
async def get_model(request: Request, model_id: str) -> s.Model:
    return await asyncio.to_thread(model_card, request, model_id)


@router.post("/models/load", dependencies=[Depends(authorize)], responses=ERRORS)
async def load_model(request: Request, body: s.ModelRequest) -> s.Model:
    """Loads a model now (llama-server's router names it so); answers once it is ready."""
    await runner_for(request, body)
    return model_card(request, body.model)


@router.post("/models/unload", dependencies=[Depends(authorize)], responses=ERRORS)
async def unload_model(request: Request, body: s.ModelRequest) -> s.Model:
    """Unloads a model once nothing runs or waits on it (new requests load it again)."""
    pool = state(request).pool
    model = pool.find(body.model)
    while model.runner is not None and not model.runner.idle:
        await asyncio.sleep(0.05)
    await pool.unload(model, "asked to")
    return model_card(request, body.model)


@router.get("/get_load", dependencies=[Depends(authorize)], responses=ERRORS)
async def get_load(request: Request) -> dict:
    """Requests running and waiting, all models (vllm-router's power-of-two policy polls it)."""
    return {"load": sum(state(request).metrics.load.values())}


# --- tokenizer --------------------------------------------------------------------------------------
@router.post("/tokenize", dependencies=[Depends(authorize)], responses=ERRORS)
async def tokenize(request: Request, body: s.TokenizeRequest):
    runner = await runner_for(request, body)
    tok = runner.loaded.tokenizer
    if body.content is not None:  # llama-server's
        return {"tokens": tok.encode(body.content, add_special=body.add_special, parse_special=body.parse_special)}
    if body.prompt is not None:
        tokens = tok.encode(body.prompt, add_special=body.add_special_tokens, parse_special=True)
    else:
        try:
            chat = ChatCompletionRequest.model_validate(dict(model=body.model or "", messages=body.messages,
                                                             tools=body.tools))
        except ValidationError as e:
            raise bad_request(f"messages: {e.errors()[0]['msg']}", param="messages") from None
        tokens = plan(runner, chat.chat(runner.defaults), chat.fields()).prompt_ids
    return {"count": len(tokens), "max_model_len": runner.n_ctx, "tokens": tokens, "token_strs": None}


@router.post("/detokenize", dependencies=[Depends(authorize)], responses=ERRORS)
async def detokenize(request: Request, body: s.DetokenizeRequest):
    runner = await runner_for(request, body)
    try:
        runner.loaded.model.check_tokens(body.tokens)
    except InvalidRequest as e:
        raise bad_request(str(e), param="tokens") from None
    return {"content": runner.loaded.tokenizer.decode(body.tokens)}
