"""The server's own endpoints' types, and OpenAI's for embeddings and models: what each model is
(with llamba's `meta`, as llama-server's /props reports it), and llama-server's tokenizer
endpoints."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, create_model, model_validator

from llamba.engine.sampling import TUNABLE

from .common import KEEP_ALIVE, OMIT_NONE, APIModel


class EmbeddingRequest(APIModel):
    model: str
    keep_alive: float | None = KEEP_ALIVE
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = Field(None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class ModelRequest(APIModel):
    model: str


class TokenizeRequest(APIModel):
    """llama-server's body (`content`), or vLLM's (`prompt`, or `messages` with `tools`, rendered
    as /v1/chat/completions would render them), which routers send."""
    content: str | None = None
    add_special: bool = False
    parse_special: bool = True
    prompt: str | None = None
    messages: list[dict] | None = None
    tools: list[dict] | None = None
    add_special_tokens: bool = True
    model: str | None = None

    @model_validator(mode="after")
    def one_input(self) -> "TokenizeRequest":
        if sum(x is not None for x in (self.content, self.prompt, self.messages)) != 1:
            raise ValueError("give one of content (llama-server's form), prompt or messages (vLLM's)")
        return self


class DetokenizeRequest(APIModel):
    tokens: list[int]
    model: str | None = None


# What a request that leaves the sampling fields out gets (max_tokens None: until the context is full).
SamplingDefaults = create_model("SamplingDefaults", **{name: (kind | None if name == "max_tokens" else kind, ...)
                                                       for name, (kind, _) in TUNABLE.items()})


class ModelMeta(BaseModel):
    """llamba's additions to OpenAI's model object (as llama-server's /props reports them); a
    model not loaded has what its file's header says (its own context length, its size)."""
    loaded: bool
    context_length: int | None = None         # tokens per request (KV cache), capped by the model's own
    size_bytes: int | None = OMIT_NONE        # the file's, on disk
    error: str | None = OMIT_NONE             # why its file cannot be read
    parallel: int | None = OMIT_NONE          # requests generated together
    sampling_defaults: SamplingDefaults | None = OMIT_NONE


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llamba"
    meta: ModelMeta | None = OMIT_NONE


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
