"""Generation: prefill the prompt as one batch, then decode one token at a time, streaming
events with text deltas (whole UTF-8 characters only), logprobs and the reason it stopped."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .model import KVCache, Llama
from .sampling import Sampler, SamplingParams, log_softmax
from .tokenizer import StreamDecoder, Tokenizer


@dataclass
class TokenEvent:
    token_id: int
    text: str                          # new text; may be "" while a character or stop string is pending
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)
    finish_reason: str | None = None   # "stop" or "length" on the last event


class StopStrings:
    """Holds back text that could be the start of a stop string; cuts the text at one."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop string was reached)."""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[:min(hits)], ""
            return out, True
        hold = max((k for s in self.stops for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def generate(model: Llama, tokenizer: Tokenizer, prompt_ids: list[int], params: SamplingParams,
             cache: KVCache) -> Iterator[TokenEvent]:
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    room = cache.n_ctx - len(prompt_ids)
    if room <= 0:
        raise ValueError(f"prompt of {len(prompt_ids)} tokens leaves no room in a context of {cache.n_ctx}")
    max_tokens = room if params.max_tokens is None else min(params.max_tokens, room)
    sampler, decoder, stops = Sampler(params), StreamDecoder(tokenizer), StopStrings(params.stop)
    context, generated = list(prompt_ids), []
    logits = model.forward(prompt_ids, 0, cache)
    while True:
        token = sampler(logits, context, generated)
        context.append(token)
        generated.append(token)
        event = TokenEvent(token, "")
        if params.logprobs is not None:
            lp = log_softmax(logits)
            event.logprob = float(lp[token])
            top = np.argsort(-lp, kind="stable")[:params.logprobs]
            event.top_logprobs = [(int(i), float(lp[i])) for i in top]
        if token in tokenizer.stop_ids and not params.ignore_eos:
            event.text, event.finish_reason = stops.flush() + decoder.flush(), "stop"
            yield event
            return
        text, stopped = stops.push(decoder.push(token))
        if stopped:
            event.text, event.finish_reason = text, "stop"
        elif len(generated) >= max_tokens:
            event.text, event.finish_reason = text + stops.push(decoder.flush())[0] + stops.flush(), "length"
        else:
            event.text = text
        yield event
        if event.finish_reason:
            return
        logits = model.forward([token], len(context) - 1, cache)
