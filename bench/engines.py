"""One measurement of one engine in a fresh process, printed as JSON (run by bench/__main__.py).

    python -m bench.engines {llamba|llama.cpp} MODEL THREADS

Measured, as llama-bench does, on fixed token ids (no sampling): load to first token (model load,
then one token evaluated), prefill of a 128-token prompt (pp128), decode of 64 tokens one at a
time after a 1-token start (tg64), and resident memory after a 512-token generation.
"""
from __future__ import annotations

import json
import sys
import time

PROMPT = [(7919 * i) % 39000 + 1000 for i in range(128)]  # fixed ids, inside any Llama vocabulary
N_CTX = 1024


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Llamba:
    def __init__(self, model: str, threads: int):
        from llamba.engine.kernels import isa
        from llamba.engine.loader import set_threads
        from llamba.engine.model import Llama
        set_threads(threads)
        self.model = Llama(model)
        self.system = isa.describe()

    def reset(self) -> None:
        self.cache, self.pos = self.model.new_cache(N_CTX), 0

    def eval(self, tokens: list[int]) -> None:
        self.model.forward(tokens, self.pos, self.cache)
        self.pos += len(tokens)


class LlamaCpp:
    def __init__(self, model: str, threads: int):
        from llama_cpp import Llama, llama_print_system_info
        self.llm = Llama(model, n_ctx=N_CTX, n_batch=512, n_threads=threads, n_threads_batch=threads,
                         verbose=False)
        self.system = {"build": llama_print_system_info().decode().strip()}

    def reset(self) -> None:
        self.llm.reset()

    def eval(self, tokens: list[int]) -> None:
        self.llm.eval(tokens)


def measure(engine_name: str, model: str, threads: int) -> dict:
    start = time.perf_counter()
    engine = (Llamba if engine_name == "llamba" else LlamaCpp)(model, threads)
    engine.reset()
    engine.eval(PROMPT[:1])
    load_to_first_token = time.perf_counter() - start

    engine.reset()
    t = time.perf_counter()
    engine.eval(PROMPT)
    pp128 = len(PROMPT) / (time.perf_counter() - t)

    engine.reset()
    engine.eval(PROMPT[:1])
    t = time.perf_counter()
    for token in PROMPT[1:65]:
        engine.eval([token])
    tg64 = 64 / (time.perf_counter() - t)

    engine.reset()  # then 512 tokens of generation, for the memory figure
    engine.eval(PROMPT[:1])
    for i in range(511):
        engine.eval([PROMPT[i % 128]])
    return dict(load_to_first_token_s=load_to_first_token, pp128_tps=pp128, tg64_tps=tg64,
                rss_after_512_mb=rss_mb(), system=engine.system)


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
