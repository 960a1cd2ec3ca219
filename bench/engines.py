"""One measurement of one engine in a fresh process, printed as JSON (run by bench/__main__.py).

    python -m bench.engines {llamba|llama.cpp} MODEL THREADS [--long DEPTH ...]

Measured, as llama-bench does, on fixed token ids (no sampling): load to first token (model load,
then one token evaluated), prefill of a 128-token prompt (pp128, the median of 3), decode of 64
tokens one at a time after a 1-token start (tg64), and resident memory after a 512-token generation.
With --long, instead: prefill of a 2,048-token prompt in pieces of 512 (pp2048, as `llama-bench
-p 2048`: its batch is 512 tokens) and, for each DEPTH, 32 tokens decoded after a prompt of DEPTH
tokens (as `llama-bench -n 32 -d DEPTH`). llama.cpp runs with flash attention, its faster setting
on long prompts.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

def token_ids(n: int) -> list[int]:
    return [(7919 * i) % 30000 + 1000 for i in range(n)]  # fixed ids, inside every vocabulary here (32,000 the least)


PROMPT = token_ids(128)
N_CTX = 1024
PIECE = 512  # prompt tokens per forward call in the long measurements
# pp128 is the median of this many timed prompts in one process (llama-bench times 5 by default):
# one timed prompt of a 1B model, ~1-2 s, scattered 90-113 tokens/s from run to run on a shared machine
PROMPT_REPEATS = 3


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Llamba:
    def __init__(self, model: str, threads: int, n_ctx: int = N_CTX):
        from llamba.engine.kernels import isa
        from llamba.engine.loader import set_threads
        from llamba.engine.model import Llama
        set_threads(threads)
        self.model, self.n_ctx = Llama(model), n_ctx
        self.system = isa.describe()

    def reset(self) -> None:
        self.cache, self.pos = self.model.new_cache(self.n_ctx), 0

    def eval(self, tokens: list[int]) -> None:
        self.model.forward(tokens, self.pos, self.cache)
        self.pos += len(tokens)


class LlamaCpp:
    def __init__(self, model: str, threads: int, n_ctx: int = N_CTX, flash_attn: bool = False):
        from llama_cpp import Llama, llama_print_system_info
        self.llm = Llama(model, n_ctx=n_ctx, n_batch=PIECE, n_threads=threads, n_threads_batch=threads,
                         flash_attn=flash_attn, verbose=False)
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

    engine.reset()  # a warm-up prompt first, as llama-bench runs one: for a small model the first
    engine.eval(PROMPT)  # batched call's one-off costs (numba loading its kernels) were half the time
    times = []
    for _ in range(PROMPT_REPEATS):
        engine.reset()
        t = time.perf_counter()
        engine.eval(PROMPT)
        times.append(time.perf_counter() - t)
    pp128 = len(PROMPT) / statistics.median(times)

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


def measure_long(engine_name: str, model: str, threads: int, depths: list[int]) -> dict:
    n_ctx = max(depths + [2048]) + 64
    engine = (Llamba(model, threads, n_ctx) if engine_name == "llamba"
              else LlamaCpp(model, threads, n_ctx, flash_attn=True))
    ids = token_ids(n_ctx)
    engine.reset()
    engine.eval(ids[:PIECE])  # (warm-up: the first call compiles, in llamba)
    figures = {}
    for depth in sorted(set(depths + [2048])):
        engine.reset()
        t = time.perf_counter()
        for i in range(0, depth, PIECE):
            engine.eval(ids[i:min(i + PIECE, depth)])
        if depth == 2048:
            figures["pp2048_tps"] = 2048 / (time.perf_counter() - t)
        if depth in depths:
            t = time.perf_counter()
            for token in ids[depth:depth + 32]:
                engine.eval([token])
            figures[f"tg32_d{depth}_tps"] = 32 / (time.perf_counter() - t)
    return dict(figures, rss_at_depth_mb=rss_mb(), system=engine.system)


if __name__ == "__main__":
    engine, model, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if "--long" in sys.argv:
        print(json.dumps(measure_long(engine, model, threads, [int(d) for d in sys.argv[sys.argv.index("--long") + 1:]])))
    else:
        print(json.dumps(measure(engine, model, threads)))
