"""Perplexity by llama.cpp's protocol (llama-perplexity): the text is tokenized, cut into consecutive
chunks of n_ctx tokens, each chunk's first token becomes BOS (even for models that do not add BOS
when tokenizing, such as SmolLM2, as the reference numbers show), and only the second half of
each chunk is scored, each token from the logits of the position before it."""
from __future__ import annotations

import math
from typing import Callable


from .model import Llama
from .sampling import log_softmax
from .tokenizer import Tokenizer


def perplexity(model: Llama, tokenizer: Tokenizer, text: str, n_ctx: int,
               progress: Callable[[int, int, float], None] | None = None, kv_type: str = "f16") -> tuple[float, int]:
    """(perplexity, number of chunks)."""
    tokens = tokenizer.encode(text, add_special=True)
    n_chunks = len(tokens) // n_ctx
    if n_chunks == 0:
        raise ValueError(f"the text has {len(tokens)} tokens, fewer than one chunk of {n_ctx}")
    first = n_ctx // 2
    nll, count = 0.0, 0
    for chunk in range(n_chunks):
        ids = tokens[chunk * n_ctx:(chunk + 1) * n_ctx]
        if tokenizer.bos_id is not None:
            ids[0] = tokenizer.bos_id
        logits = model.forward(ids, 0, model.new_cache(n_ctx, kv_type=kv_type), all_logits=True)
        for j in range(first, n_ctx - 1):
            nll -= log_softmax(logits[j])[ids[j + 1]]
            count += 1
        if progress:
            progress(chunk + 1, n_chunks, math.exp(nll / count))
    return math.exp(nll / count), n_chunks
