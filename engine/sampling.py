"""Choosing the next token: penalties, logit bias, top-k, top-p, min-p, temperature, and a seeded
random generator per request. Small pure steps, in llama.cpp's order.

`SamplingParams`' field defaults are the one place each default lives. They are llama-server's,
not OpenAI's: a small model sampled at OpenAI's (temperature 1, no top-k or min-p, no length
limit) rambles on for thousands of tokens. A model file may carry its own (`general.sampling.*`,
read by `model_defaults`); the server's configuration may override them per model; a request's
own fields override those."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class SamplingParams:
    temperature: float = 0.8          # 0 means greedy
    top_k: int = 40                   # 0 keeps every token
    top_p: float = 0.95
    min_p: float = 0.05
    presence_penalty: float = 0.0     # OpenAI's, over the generated tokens
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0       # llama.cpp's, over the last `repeat_last_n` tokens of context
    repeat_last_n: int = 64
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    max_tokens: int | None = 2048     # a runaway generation ends here; None: when the context is full
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None       # None: no logprobs; N: the chosen token's and the top N
    grammar: str | None = None        # an llguidance grammar the output must follow (grammar.py)
    grammar_triggers: tuple[str, ...] = ()  # if any: the grammar applies once the output starts so


# The sampling fields an operator (per model), a request and the command line may each set: their
# types and bounds (pydantic's ge / gt / le). The server's settings, the model card, the request
# schemas and the CLI flags are all made from this one list.
TUNABLE: dict[str, tuple[type, dict]] = {
    "temperature": (float, dict(ge=0.0, le=2.0)),
    "top_k": (int, dict(ge=0)),
    "top_p": (float, dict(gt=0.0, le=1.0)),
    "min_p": (float, dict(ge=0.0, le=1.0)),
    "repeat_penalty": (float, dict(ge=0.01, le=100.0)),
    "max_tokens": (int, dict(ge=1)),
}

# A request's seed: any 64-bit integer, signed or not, as OpenAI's clients send it
SEED = dict(ge=-(2**63), lt=2**64)

# GGUF metadata key -> the field it sets (llama.cpp's names for the model's recommended sampling)
GGUF_KEYS = {"general.sampling.temp": "temperature", "general.sampling.top_k": "top_k",
             "general.sampling.top_p": "top_p", "general.sampling.min_p": "min_p",
             "general.sampling.penalty_repeat": "repeat_penalty", "general.sampling.penalty_last_n": "repeat_last_n"}


def model_defaults(metadata: dict, **overrides) -> SamplingParams:
    """A model's defaults: SamplingParams' own, then the file's general.sampling.* keys, then
    `overrides` (None values are left out)."""
    values = {field: type(getattr(SamplingParams, field))(metadata[key])
              for key, field in GGUF_KEYS.items() if key in metadata}
    values.update((k, v) for k, v in overrides.items() if v is not None)
    return replace(SamplingParams(), **values)


FLOAT32_MAX = np.finfo(np.float32).max


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    return z - np.log(np.exp(z).sum())


def apply_penalties(logits: np.ndarray, p: SamplingParams, context: list[int], generated: list[int],
                    unpenalized: frozenset[int] = frozenset()) -> np.ndarray:
    """`unpenalized`: ids the repeat penalty leaves alone — the end-of-turn tokens, which a chat
    prompt holds after every message: penalized, they keep a small model from ending its answer
    (1 answer in 800 to SmolLM2 ran on to max_tokens, 0 in 400 without)."""
    logits = logits.astype(np.float32, copy=True)
    touched = [np.fromiter(p.logit_bias, dtype=np.int64, count=len(p.logit_bias))]
    for token, bias in p.logit_bias.items():
        logits[token] += bias
    if p.repeat_penalty != 1.0 and p.repeat_last_n > 0:
        recent = np.unique(np.asarray([t for t in context[-p.repeat_last_n:] if t not in unpenalized], dtype=np.int64))
        if len(recent):
            values = logits[recent]
            logits[recent] = np.where(values > 0, values / p.repeat_penalty, values * p.repeat_penalty)
            touched.append(recent)
    if (p.presence_penalty or p.frequency_penalty) and generated:
        counts = Counter(generated)
        ids = np.fromiter(counts.keys(), dtype=np.int64)
        n = np.fromiter(counts.values(), dtype=np.float32)
        logits[ids] -= n * p.frequency_penalty + p.presence_penalty
        touched.append(ids)
    # extreme penalties overflow: keep the order, in finite numbers (a grammar's -inf stays, and
    # a NaN, from 0 times infinity, is never chosen) — checked where a penalty or bias applied
    ids = np.concatenate(touched)
    values = logits[ids]
    logits[ids] = np.where(np.isneginf(values) | np.isnan(values), np.float32(-np.inf),
                           np.clip(values, -FLOAT32_MAX, FLOAT32_MAX))
    return logits


def largest(logits: np.ndarray, k: int) -> np.ndarray:
    """The ids of the k largest logits, largest first and ties in id order — a stable sort's
    first k — without sorting the whole vocabulary (a full sort of 128k logits takes ~14 ms, a
    batched decode step's own length, for every sequence); k <= 0: every id, sorted."""
    if k <= 0 or k >= len(logits):
        return np.argsort(-logits, kind="stable")
    kth = np.partition(logits, len(logits) - k)[len(logits) - k]  # the k-th largest value
    above = np.flatnonzero(logits > kth)
    ids = np.concatenate([above, np.flatnonzero(logits == kth)[:k - len(above)]])
    return ids[np.argsort(-logits[ids], kind="stable")]


def filter_candidates(logits: np.ndarray, p: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """The ids that survive top-k, top-p and min-p, and their probabilities at the temperature."""
    order = largest(logits, p.top_k)
    top = logits[order].astype(np.float64)
    probs = np.exp((top - top[0]) / p.temperature)  # (differences first: a tiny temperature cannot overflow)
    probs /= probs.sum()
    if p.min_p > 0:
        keep = probs >= p.min_p * probs[0]
        order, probs = order[keep], probs[keep]
    if p.top_p < 1.0:
        cut = int(np.searchsorted(np.cumsum(probs), p.top_p)) + 1  # smallest set reaching top_p
        order, probs = order[:cut], probs[:cut]
    return order, probs / probs.sum()


class Sampler:
    def __init__(self, params: SamplingParams, index: int = 0, unpenalized: frozenset[int] = frozenset()):
        """`index`: the choice of a request (n > 1); each draws from its own stream, all fixed by
        the seed (the first choice's is the seed's own, as with n = 1). `unpenalized`: see
        apply_penalties."""
        self.params, self.unpenalized = params, unpenalized
        seed = None if params.seed is None else params.seed % 2**64  # numpy takes no negative seeds
        seed = seed if seed is None or index == 0 else [seed, index]
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray, context: list[int], generated: list[int]) -> int:
        p = self.params
        logits = apply_penalties(logits, p, context, generated, self.unpenalized)
        if p.temperature <= 0:
            return int(np.argmax(logits))
        ids, probs = filter_candidates(logits, p)
        return int(ids[self.rng.choice(len(ids), p=probs)])
