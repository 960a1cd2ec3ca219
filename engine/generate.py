"""Generation: prefill the prompt as one batch, then decode one token at a time, streaming
events with text deltas (whole UTF-8 characters only), logprobs and the reason it stopped."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .errors import InvalidRequest
from .grammar import Constraint
from .kv_cache import KVCache
from .model import Llama
from .sampling import Sampler, SamplingParams, largest, log_softmax
from .tokenizer import StreamDecoder, Tokenizer


@dataclass
class TokenEvent:
    token_id: int
    text: str                          # new text; may be "" while a character or stop string is pending
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)
    finish_reason: str | None = None   # "stop" or "length" on the last event
    index: int = 0                     # which choice of the request
    stop: str | None = None            # the stop string that ended it, if one did


class StopStrings:
    """Holds back text that could be the start of a stop string; cuts the text at one."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def push(self, text: str) -> tuple[str, str | None]:
        """(text safe to emit, the stop string reached if one was: the first in the text)."""
        self.pending += text
        hits = sorted((i, s) for s in self.stops if (i := self.pending.find(s)) >= 0)
        if hits:
            at, stop = hits[0]
            out, self.pending = self.pending[:at], ""
            return out, stop
        hold = max((k for s in self.stops for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, None

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def check_request(model: Llama, prompt_ids: list[int], params: SamplingParams, n_ctx: int) -> None:
    """The engine's rules for a request, raising InvalidRequest: a prompt of valid token ids that
    leaves room for at least one token, and a logit bias on valid ids. (A max_tokens beyond the
    room is not an error here: generation stops with "length" when the context is full.)"""
    if not prompt_ids:
        raise InvalidRequest("The prompt is empty.", param="prompt")
    model.check_tokens(prompt_ids)
    vocab = model.config.vocab_size
    if any(not 0 <= t < vocab for t in params.logit_bias):
        raise InvalidRequest(f"logit_bias keys must be token ids in [0, {vocab})", param="logit_bias")
    if len(prompt_ids) >= n_ctx:
        raise InvalidRequest(f"This model's context is {n_ctx} tokens and the prompt has {len(prompt_ids)}: "
                             "no room to generate.", param="prompt", code="context_length_exceeded")


class Sequence:
    """One choice's generation state: given the logits after its latest token, it samples the
    next one and says what to stream (text, logprobs) and whether it is done. The caller runs
    the model: alone (`generate`) or batched with other sequences (the scheduler). `index`
    tells the choices of one request apart: each has its own stream of random numbers."""

    def __init__(self, tokenizer: Tokenizer, prompt_ids: list[int], params: SamplingParams, n_ctx: int,
                 index: int = 0, constraint: Constraint | None = None):
        self.tokenizer, self.params, self.index, self.constraint = tokenizer, params, index, constraint
        room = n_ctx - len(prompt_ids)
        self.max_tokens = room if params.max_tokens is None else min(params.max_tokens, room)
        self.sampler = Sampler(params, index, unpenalized=tokenizer.stop_ids)
        self.decoder, self.stops = StreamDecoder(tokenizer), StopStrings(params.stop)
        self.context, self.generated = list(prompt_ids), []

    def accept(self, logits: np.ndarray, last: bool = False) -> TokenEvent:
        """Sample the next token from `logits` and describe it; the event's finish_reason is set
        when this is the last one. `last`: the caller ends the sequence here (out of time), which
        finishes it as max_tokens does, with "length" and the text held back flushed."""
        params, tokenizer = self.params, self.tokenizer
        if self.constraint is not None:
            logits = self.constraint.mask(logits)
        token = self.sampler(logits, self.context, self.generated)
        if self.constraint is not None and not self.constraint.accept(token):
            # the grammar's parser gave up: the answer ends before a token it cannot follow
            return TokenEvent(token, self.stops.push(self.decoder.flush())[0] + self.stops.flush(),
                              index=self.index, finish_reason="stop")
        self.context.append(token)
        self.generated.append(token)
        event = TokenEvent(token, "", index=self.index)
        if params.logprobs is not None:
            lp = log_softmax(logits)
            event.logprob = float(lp[token])
            top = largest(lp, params.logprobs) if params.logprobs else []
            event.top_logprobs = [(int(i), float(lp[i])) for i in top]
        grammar_done = self.constraint is not None and self.constraint.finished
        if token in tokenizer.stop_ids and (not params.ignore_eos or grammar_done):
            event.text, event.finish_reason = self.stops.flush() + self.decoder.flush(), "stop"
            return event
        text, stopped = self.stops.push(self.decoder.push(token))
        if grammar_done:  # the grammar allows nothing more: end here
            event.text, event.finish_reason = text + self.stops.push(self.decoder.flush())[0] + self.stops.flush(), "stop"
        elif stopped is not None:
            event.text, event.finish_reason, event.stop = text, "stop", stopped
        elif len(self.generated) >= self.max_tokens or last:
            event.text = text + self.stops.push(self.decoder.flush())[0] + self.stops.flush()
            event.finish_reason = "length"
        else:
            event.text = text
        return event


def generate(model: Llama, tokenizer: Tokenizer, prompt_ids: list[int], params: SamplingParams,
             cache: KVCache, index: int = 0) -> Iterator[TokenEvent]:
    """One sequence alone: prefill the prompt as one batch, then decode a token at a time.
    `index`: which choice of a request it is (its stream of random numbers, as Sequence's)."""
    check_request(model, prompt_ids, params, cache.n_ctx)
    seq = Sequence(tokenizer, prompt_ids, params, cache.n_ctx, index=index)
    logits = model.forward(prompt_ids, 0, cache)
    while True:
        event = seq.accept(logits)
        yield event
        if event.finish_reason:
            return
        logits = model.forward([event.token_id], len(seq.context) - 1, cache)
