"""How the references' llama.cpp figures are made (llama-cpp-python, `logits_all=True`), for the
families' and Gemma 3's reference makers: greedy steps with their top 5 logprobs, and the
perplexity by llama-perplexity's protocol (engine/perplexity.py says it)."""
from __future__ import annotations

import numpy as np

from .exact import log_softmax, step


def greedy(llm, prompt_ids: list[int], n: int) -> list[dict]:
    """n greedy steps after the prompt: {id, logprob, top: [[id, logprob] x 5]} each."""
    llm.reset()
    llm.eval(prompt_ids)
    steps = []
    for _ in range(n):
        steps.append(step(log_softmax(llm.scores[llm.n_tokens - 1].astype(np.float64))))
        llm.eval([steps[-1]["id"]])
    return steps


def case(prompt: str, prompt_ids: list[int], steps: list[dict]) -> dict:
    """One prompt's entry in a reference's `greedy`."""
    return dict(prompt=prompt, prompt_ids=prompt_ids, output_ids=[s["id"] for s in steps], steps=steps)


def perplexity(llm, text_ids: list[int], n_ctx: int, bos: int) -> tuple[float, int]:
    """(perplexity, chunks) of the text's tokens, each chunk's first replaced by `bos`."""
    nll, count, first = 0.0, 0, n_ctx // 2
    for chunk in range(len(text_ids) // n_ctx):
        ids = [bos] + text_ids[chunk * n_ctx + 1:(chunk + 1) * n_ctx]
        llm.reset()
        llm.eval(ids)
        logprobs = log_softmax(llm.scores[first:n_ctx - 1].astype(np.float64))
        nll -= logprobs[np.arange(len(logprobs)), ids[first + 1:]].sum()
        count += len(logprobs)
    return float(np.exp(nll / count)), len(text_ids) // n_ctx
