"""One engine behind its OpenAI-compatible HTTP server: start-up and one streaming client.

    python -m bench.http {llamba|llama.cpp} MODEL THREADS

Starts the server (llamba serve, or llama-cpp-python's `llama_cpp.server`), then measures: start
to first answer (process start until a 1-token completion returns), and for a streamed 64-token
completion, time to first token and tokens/s over the stream (llamba without speculation, so that
it is a decode figure). Prints JSON.
"""
from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.server import free_port

from .engines import N_CTX

ROOT = Path(__file__).resolve().parent.parent

PROMPT = "The history of the city begins with a small settlement on the river, where"


def server_command(engine: str, model: str, threads: int, port: int) -> list[str]:
    if engine == "llamba":
        # without drafts from the prompt, as llama-cpp-python's server runs: on these random-weight
        # models greedy text repeats itself, and speculation would read as decode well above tg64
        return [sys.executable, "-m", "llamba", "serve", "--model", model, "--threads", str(threads),
                "--port", str(port), "--ctx", str(N_CTX), "--no-speculative"]
    return [sys.executable, "-m", "llama_cpp.server", "--model", model, "--n_threads", str(threads),
            "--n_threads_batch", str(threads), "--port", str(port), "--n_ctx", str(N_CTX)]


def first_answer(base: str, proc: subprocess.Popen, timeout: float = 300) -> str:
    """Poll until the server answers a 1-token completion; returns the model id."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            model = httpx.get(f"{base}/v1/models", timeout=2).json()["data"][0]["id"]
            r = httpx.post(f"{base}/v1/completions", json={"model": model, "prompt": PROMPT, "max_tokens": 1},
                           timeout=60)
            if r.status_code == 200:
                return model
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not answer")


def settled(base: str, timeout: float = 300) -> None:
    """Wait until llamba compiles nothing in the background (`llamba_kernels_compiling`: after a
    first start its first answers run slower kernels for a while, warmup.py); at once for a
    server without that metric."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = httpx.get(f"{base}/metrics", timeout=10)
        if r.status_code != 200 or not re.search(r"^llamba_kernels_compiling\{.*\} 1", r.text, re.M):
            return
        time.sleep(0.2)
    raise RuntimeError("kernels still compiling")


def stream_once(base: str, model: str, max_tokens: int = 64) -> tuple[float, float]:
    """(time to first token, tokens/s after it) for one streamed completion."""
    body = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    start, times = time.perf_counter(), []
    with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("text"):
                    times.append(time.perf_counter())
    return times[0] - start, (len(times) - 1) / (times[-1] - times[0])


def measure(engine: str, model: str, threads: int, repeats: int = 3) -> dict:
    port = free_port()
    start = time.perf_counter()
    log = tempfile.TemporaryFile("w+")  # servers log a lot: a pipe nobody reads would stall them
    proc = subprocess.Popen(server_command(engine, model, threads, port), stdout=log, stderr=log, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        model_id = first_answer(base, proc)
        start_to_first_answer = time.perf_counter() - start
        settled(base)
        runs = [stream_once(base, model_id) for _ in range(repeats)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return dict(start_to_first_answer_s=start_to_first_answer,
                http_ttft_s=statistics.median(r[0] for r in runs),
                http_stream_tps=statistics.median(r[1] for r in runs))


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
