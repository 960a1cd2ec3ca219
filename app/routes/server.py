"""The server's own endpoints: health, metrics, the models it serves, and llama-server's
tokenizer endpoints."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from llamba.engine.errors import InvalidRequest
from llamba.engine.sampling import TUNABLE
from llamba.app import schemas as s
from llamba.app.errors import OpenAIError, bad_request

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
    st = state(request)
    runner = st.runners.get(model_id)
    meta = None
    if runner is not None:
        meta = s.ModelMeta(context_length=runner.n_ctx, parallel=runner.parallel, sampling_defaults=s.SamplingDefaults(
            **{name: getattr(runner.defaults, name) for name in TUNABLE}))
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
