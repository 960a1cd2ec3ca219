"""What every API's types share: the base that ignores unknown fields (as OpenAI does, kept in
`model_extra` so that the routes can log them), fields left out rather than sent as null, the
sampling fields' bounds (engine/sampling.py's TUNABLE), ids, and OpenAI's error shape.
`sampling_params` is the one bridge from a request into the engine's sampling."""
from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from llamba.engine.sampling import SEED, TUNABLE, SamplingParams


class APIModel(BaseModel):
    # NaN and infinities are not JSON, though Python's parser reads them: refused, not sampled
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


OMIT_NONE = Field(None, exclude_if=lambda v: v is None)
# llamba's, with Ollama's name: how long the model stays loaded unused after this request (seconds;
# 0 unloads it once idle, negative keeps it loaded); only a models folder's models unload
KEEP_ALIVE = Field(None, description="seconds the model stays loaded unused after this request (Ollama's)")


# OpenAI's logit_bias: token id -> a bias from -100 to 100 added to its logit, 1,024 at most
LogitBias = Annotated[dict[int, Annotated[float, Field(ge=-100, le=100)]], Field(max_length=1024)]


def tunable(name: str, default=None, **more):
    """A sampling field a request may set, bounded as engine/sampling.py's TUNABLE says."""
    return Field(default, **TUNABLE[name][1], **more)


def seed_field(**more):
    return Field(None, **SEED, **more)


def sampling_params(defaults: SamplingParams, request: BaseModel, max_tokens: int | None, **given) -> SamplingParams:
    """The model's `defaults`, with every sampling field `request` has and gives (TUNABLE's, OpenAI's
    penalties, seed and logit bias), then `given`; max_tokens the request's own (None: the model runner's
    default, which may stop at the context's end)."""
    names = (*TUNABLE, "presence_penalty", "frequency_penalty", "seed", "logit_bias")
    fields = {name: getattr(request, name, None) for name in names if name != "max_tokens"}
    return replace(defaults, **{k: v for k, v in {**fields, **given}.items() if v is not None}, max_tokens=max_tokens)


def new_id(prefix: str) -> str:
    """An id as each API writes its own: `prefix` with its separator ("chatcmpl-", "resp_", "msg_")."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo
