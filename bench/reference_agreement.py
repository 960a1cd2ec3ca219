"""How closely an engine follows llama.cpp's reference logprobs (tests/data/<model>.json, made by
llama-cpp-python 0.3.36 natively built, flash attention on): at each greedy step whose reference
top-1/top-2 gap is at least 0.05, the distance of the engine's log-probability of the reference's
token from the reference's, until the first closer step (test_greedy.py's protocol).

    python -m bench.reference_agreement [llamba | llama.cpp | llama.cpp-avx2] [models...]

llamba runs as the environment sets it (LLAMBA_KERNELS, LLAMBA_ACTIVATIONS); llama.cpp-avx2 is
the same release built for AVX2 only (bench/llama_cpp_avx2.py), run in a process of its own.
Prints, per model: clear steps, median and largest distance, steps over 0.05, and steps where
the engine's top token is another (which end that prompt's comparison).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from llamba.engine.sampling import log_softmax
from tests.support import ALL_MODELS, model_path, reference

ROOT = Path(__file__).resolve().parent.parent

GAP, BOUND = 0.05, 0.05


class Llamba:
    def __init__(self, name: str):
        from llamba.engine.model import Llama
        self.model, self.pos = Llama(model_path(name)), 0

    def start(self, ids: list[int]) -> np.ndarray:
        self.cache = self.model.new_cache(len(ids) + 40)
        self.pos = len(ids)
        return self.model.forward(ids, 0, self.cache)

    def next(self, token: int) -> np.ndarray:
        self.pos += 1
        return self.model.forward([token], self.pos - 1, self.cache)


class LlamaCpp:
    def __init__(self, name: str):
        from llama_cpp import Llama
        self.llm = Llama(str(model_path(name)), n_ctx=256, n_batch=256, n_threads=2, logits_all=True,
                         flash_attn=True, verbose=False)

    def start(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return self.llm.scores[self.llm.n_tokens - 1]

    def next(self, token: int) -> np.ndarray:
        self.llm.eval([token])
        return self.llm.scores[self.llm.n_tokens - 1]


def agreement(engine, name: str) -> str:
    distances, other_tokens = [], 0
    for case in reference(name)["greedy"]:
        logits = engine.start(case["prompt_ids"])
        for step, token in zip(case["steps"], case["output_ids"]):
            (top1, lp1), (_, lp2) = step["top"][0], step["top"][1]
            if lp1 - lp2 < GAP:
                break
            lp = log_softmax(logits)
            if int(lp.argmax()) != top1:
                other_tokens += 1
                break
            distances.append(abs(lp[top1] - lp1))
            logits = engine.next(token)
    d = np.array(distances)
    return (f"{name}: {len(d)} clear steps, median {np.median(d):.4f}, max {d.max():.4f}, "
            f"over {BOUND}: {(d > BOUND).sum()}, another top token: {other_tokens}")


def main() -> None:
    engine = sys.argv[1] if len(sys.argv) > 1 else "llamba"
    names = sys.argv[2:] or ALL_MODELS
    if engine == "llama.cpp-avx2":  # its own process, with the AVX2-only build first on the path
        from .llama_cpp_avx2 import avx2_build
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(avx2_build()), os.environ.get("PYTHONPATH", "")])}
        subprocess.run([sys.executable, "-m", "bench.reference_agreement", "llama.cpp", *names], cwd=ROOT, env=env,
                       check=True)
        return
    kind = Llamba if engine == "llamba" else LlamaCpp
    if engine == "llamba":
        from llamba.engine.kernels import isa
        print(f"llamba: kernels {isa.PATH}, activations {isa.ACTIVATION_BITS} bits")
    else:
        import llama_cpp
        print(f"llama.cpp: {llama_cpp.__file__}: {llama_cpp.llama_print_system_info().decode().strip()}")
    for name in names:
        print(agreement(kind(name), name), flush=True)


if __name__ == "__main__":
    main()
