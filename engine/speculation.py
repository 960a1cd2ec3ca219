"""Speculation from the prompt: drafts of the next tokens looked up in a sequence's own context,
checked by the model in the sequence's next step.

An answer that repeats its prompt (a file with one change, a quoted passage) continues as the
context did after the last few tokens' latest earlier occurrence: those following tokens are the
draft (prompt lookup, as llama.cpp's `--spec-type ngram-simple`). The step runs the sequence's
last token and its draft together and returns the logits after each; the sampler takes them in
order and the draft holds up to the first token it did not predict. A token's maths does not
depend on its batch (engine/kernels), so the logits after an accepted draft token are the ones
decoding one token at a time would have computed: the tokens, logprobs and random draws are the
same, bit for bit; speculation only changes how many of them one step yields.

A draft's tokens cost compute whether they are accepted or not, so each sequence's `Drafter`
adapts: its drafts grow while they are accepted whole and shrink to what was accepted, and after
a draft with nothing accepted it waits 1, 2, 4, ... steps before drafting again.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .model import Span
    from .scheduler import Choice

NGRAM = (5, 4, 3)  # suffix lengths looked up, longest first (shorter ones match by chance too often)
MAX_DRAFT = 8      # tokens per draft at most
MAX_PAUSE = 64     # steps without drafting at most, after drafts that missed
# Drafts run only in a step of at most STEP_START tokens without them (a step of prompt pieces or
# of several decoding choices is bound by compute, not by reading the weights, and drafts would
# slow it), and make it at most STEP_MAX tokens.
STEP_START, STEP_MAX = 2, 16


def lookup(context: list[int] | np.ndarray, limit: int) -> list[int]:
    """Up to `limit` tokens that followed the latest earlier occurrence of the context's last
    n tokens (the longest n of NGRAM that occurred before), or [] if none did."""
    ids = np.asarray(context)
    for n in NGRAM:
        if len(ids) <= n:
            continue
        # starts i < len - n where ids[i:i + n] equals the last n tokens
        match = np.ones(len(ids) - n, dtype=bool)
        for j in range(n):
            match &= ids[j:len(ids) - n + j] == ids[len(ids) - n + j]
        starts = np.flatnonzero(match)
        if len(starts):
            after = starts[-1] + n
            return ids[after:after + limit].tolist()
    return []


class Drafter:
    """One sequence's drafting: how long its next draft may be, and how long it waits."""

    def __init__(self):
        self.length = MAX_DRAFT  # the next draft's tokens at most
        self.pause = 0           # steps to wait after a draft that missed: doubles each miss
        self.wait = 0            # steps left before drafting again

    def draft(self, context: list[int], limit: int) -> list[int]:
        if self.wait > 0:
            self.wait -= 1
            return []
        return lookup(context, min(self.length, limit)) if limit > 0 else []

    def record(self, drafted: int, accepted: int) -> None:
        if accepted == drafted:
            self.length = min(2 * self.length, MAX_DRAFT)
        else:
            self.length = max(accepted, 1)
        if accepted:
            self.pause = 0
        else:
            self.pause = min(2 * self.pause or 1, MAX_PAUSE)
            self.wait = self.pause


def add_drafts(batch: list[tuple[Choice, Span]], step_tokens: int) -> None:
    """Drafts for the decoding choices of a step (the scheduler's batch) if it is small
    (STEP_START, STEP_MAX), each within what its choice may still generate: appended to its span,
    whose every token's logits the step then returns."""
    tokens = sum(len(span.tokens) for _, span in batch)
    if tokens > STEP_START:
        return
    room = min(STEP_MAX, step_tokens) - tokens
    for c, span in batch:
        if c.drafter is None or not c.sequence.generated or len(span.tokens) > 1 or room <= 0:
            continue
        draft = c.drafter.draft(c.sequence.context, min(room, c.sequence.max_tokens - len(c.sequence.generated) - 1))
        span.tokens += draft
        span.logits = len(span.tokens)
        room -= len(draft)
