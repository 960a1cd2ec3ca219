"""Choosing the next token: penalties, logit bias, top-k, top-p, min-p, temperature, and a seeded
random generator per request. Small pure steps, in llama.cpp's order."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SamplingParams:
    temperature: float = 1.0          # 0 means greedy
    top_k: int = 0                    # 0 keeps every token
    top_p: float = 1.0
    min_p: float = 0.0
    presence_penalty: float = 0.0     # OpenAI's, over the generated tokens
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0       # llama.cpp's, over the last `repeat_last_n` tokens of context
    repeat_last_n: int = 64
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    max_tokens: int | None = None     # None: until the context is full
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None       # None: no logprobs; N: the chosen token's and the top N


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    return z - np.log(np.exp(z).sum())


def apply_penalties(logits: np.ndarray, p: SamplingParams, context: list[int], generated: list[int]) -> np.ndarray:
    logits = logits.astype(np.float32, copy=True)
    for token, bias in p.logit_bias.items():
        logits[token] += bias
    if p.repeat_penalty != 1.0 and p.repeat_last_n > 0:
        recent = np.unique(np.asarray(context[-p.repeat_last_n:], dtype=np.int64))
        if len(recent):
            values = logits[recent]
            logits[recent] = np.where(values > 0, values / p.repeat_penalty, values * p.repeat_penalty)
    if (p.presence_penalty or p.frequency_penalty) and generated:
        counts = Counter(generated)
        ids = np.fromiter(counts.keys(), dtype=np.int64)
        n = np.fromiter(counts.values(), dtype=np.float32)
        logits[ids] -= n * p.frequency_penalty + p.presence_penalty
    return logits


def filter_candidates(logits: np.ndarray, p: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """The ids that survive top-k, top-p and min-p, and their probabilities at the temperature."""
    order = np.argsort(-logits, kind="stable")
    if p.top_k > 0:
        order = order[:p.top_k]
    z = logits[order].astype(np.float64) / p.temperature
    probs = np.exp(z - z[0])
    probs /= probs.sum()
    if p.min_p > 0:
        keep = probs >= p.min_p * probs[0]
        order, probs = order[keep], probs[keep]
    if p.top_p < 1.0:
        cut = int(np.searchsorted(np.cumsum(probs), p.top_p)) + 1  # smallest set reaching top_p
        order, probs = order[:cut], probs[:cut]
    return order, probs / probs.sum()


class Sampler:
    def __init__(self, params: SamplingParams):
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, context: list[int], generated: list[int]) -> int:
        p = self.params
        logits = apply_penalties(logits, p, context, generated)
        if p.temperature <= 0:
            return int(np.argmax(logits))
        ids, probs = filter_candidates(logits, p)
        return int(ids[self.rng.choice(len(ids), p=probs)])
