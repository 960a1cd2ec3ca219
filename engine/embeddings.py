"""Embeddings: a text's vector, pooled from the model's final hidden states (after the output norm,
as llama.cpp takes them) while its prompt goes through the scheduler's steps beside generations.

Pooling as llama.cpp's: `mean` over every token (its default for these models), `cls` (the first
token), `last`; a GGUF may name its own (`<arch>.pooling_type`). The vector is L2-normalized, as
llama-server's OpenAI route returns it. Sums run in float64 in token order, so an input's vector
does not depend on the pieces its prompt was cut into or what it was batched with."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidRequest

POOLINGS = ("mean", "cls", "last")
GGUF_POOLING = {1: "mean", 2: "cls", 3: "last"}  # llama.cpp's LLAMA_POOLING_TYPE_* (0: none, 4: rank)


def model_pooling(metadata: dict) -> str | None:
    """The pooling a model file asks for (`<architecture>.pooling_type`: Qwen 3's embedding files
    say last), if it names one we do."""
    return GGUF_POOLING.get(metadata.get(f"{metadata.get('general.architecture', 'llama')}.pooling_type"))


@dataclass
class EmbeddingEvent:
    index: int               # which input of the request
    vector: np.ndarray       # (dim,) float32, unit length
    finish_reason: str = "stop"


def check_inputs(model, prompts: list[list[int]], n_ctx: int) -> None:
    """InvalidRequest for an empty input, a token the model has not, or one longer than the context."""
    for ids in prompts or [[]]:
        if not ids:
            raise InvalidRequest("An input is empty.", param="prompt")
        model.check_tokens(ids)
        if len(ids) > n_ctx:
            raise InvalidRequest(f"This model's context is {n_ctx} tokens and an input has {len(ids)}.",
                                 param="prompt", code="context_length_exceeded")


class Embedding:
    """One input's pooling state: `context` is its token ids, `add` takes the hidden states of
    its next tokens, in order, and `vector` is the result once all are in."""

    def __init__(self, prompt_ids: list[int], pooling: str, index: int = 0):
        self.context, self.pooling, self.index = list(prompt_ids), pooling, index
        self.total, self.first, self.last, self.seen = None, None, None, 0

    def add(self, rows: np.ndarray) -> None:
        rows = rows.astype(np.float64)
        self.first = rows[0] if self.first is None else self.first
        for row in rows:  # (one at a time: the same sum however the prompt was cut)
            self.total = row.copy() if self.total is None else self.total + row
        self.last, self.seen = rows[-1], self.seen + len(rows)

    def take(self, rows: np.ndarray, whole: bool) -> EmbeddingEvent | None:
        """Its next tokens' hidden states; its event once the input is `whole`ly in."""
        self.add(rows)
        return EmbeddingEvent(self.index, self.vector()) if whole else None

    def vector(self) -> np.ndarray:
        v = {"mean": self.total / max(self.seen, 1), "cls": self.first, "last": self.last}[self.pooling]
        return (v / max(np.linalg.norm(v), 1e-12)).astype(np.float32)
