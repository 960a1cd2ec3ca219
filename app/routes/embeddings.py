"""OpenAI's `POST /v1/embeddings`: texts or token ids in, one unit vector each out, pooled as
llama.cpp pools them (engine/embeddings.py); the inputs run through the model's scheduler, in as
many jobs as its `parallel` allows at once."""
from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Depends, Request

from llamba.engine.embeddings import model_pooling
from llamba.app.errors import bad_request
from llamba.app.protocol.server import EmbeddingRequest
from llamba.app.serving.base import AnswerStream, refusals, token_lists

from .common import ERRORS, authorize, runner_for, state

router = APIRouter()


def encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """As OpenAI sends it: a list of floats, or base64 of the float32 bytes (little-endian)."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()


@router.post("/v1/embeddings", dependencies=[Depends(authorize)], responses=ERRORS)
async def embeddings(request: Request, body: EmbeddingRequest):
    runner = await runner_for(request, body)
    dim = runner.loaded.model.config.dim
    if body.dimensions is not None and body.dimensions != dim:
        raise bad_request(f"This model's embeddings have {dim} dimensions; it cannot return {body.dimensions}.",
                          param="dimensions")
    prompts = token_lists(body.input, runner.loaded.tokenizer, parse_special=False)
    if not prompts:
        raise bad_request("input is empty.", param="input")
    pooling = state(request).settings.pooling or model_pooling(runner.loaded.model.file.metadata) or "mean"
    vectors = []
    for start in range(0, len(prompts), runner.parallel):
        with refusals({"prompt": "input"}):
            job = runner.submit_embeddings(prompts[start:start + runner.parallel], pooling)
        answers = await AnswerStream(runner, job).whole(request)
        vectors += [answer.events[0].vector for answer in answers.answers]
    tokens = sum(map(len, prompts))
    return {"object": "list", "model": body.model,
            "data": [{"object": "embedding", "index": i, "embedding": encoded(v, body.encoding_format)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
