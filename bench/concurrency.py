"""Many users at once: aggregate streamed tokens/s of 8 concurrent chat clients against 1, and the
prefix cache on a chat's second turn — llamba against llama.cpp's own server in the same run.

    python -m bench.concurrency [--models q4_0 smollm2] [--repeats 3] [--kernels auto|avx2|...]

Servers, 2 threads each: `llamba serve --parallel 8`; llama-server (llama.cpp, built from the
llama-cpp-python source by bench/llama_server.py) with 8 slots (-np 8) and with 1 (-np 1, one
request at a time like llama-cpp-python's own server). Every request streams a chat completion
of 64 tokens (ignore_eos) to a fresh prompt, so prompt processing is always included.
--kernels forces llamba's kernel path (LLAMBA_KERNELS); llama-server is then built for AVX2 only
if the path is below AVX-512 (as bench/__main__.py does with llama-cpp-python). Prints the CPU and
both servers' builds, and writes bench/results/concurrency-<cpu>-<kernels>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support.server import free_port

from . import write_results
from .http import first_answer, settled
from .llama_server import llama_server_binary
from .synth_model import ROOT, bench_file

TOKENS, CLIENTS, THREADS, CTX = 64, 8, 2, 2048
TOPICS = ["a lighthouse", "a lost key", "the first snow", "a market town", "a night train",
          "an old violin", "a river crossing", "a garden wall"]


def start(server: str, model: Path, port: int, log, kernels: str) -> subprocess.Popen:
    if server == "llamba":
        cmd = [sys.executable, "-m", "llamba", "serve", "--model", str(model), "--threads", str(THREADS),
               "--port", str(port), "--ctx", str(CTX), "--parallel", str(CLIENTS)]
    else:  # llama-server -np N: the context is shared by the slots
        slots = int(server.split("np")[1])
        cmd = [str(llama_server_binary(avx2_only=below_avx512(kernels))), "-m", str(model), "-t", str(THREADS),
               "-tb", str(THREADS), "--port", str(port), "-np", str(slots), "-c", str(CTX * slots)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, env={**os.environ, "LLAMBA_KERNELS": kernels})


def stream_chat(base: str, model_id: str, messages: list[dict], max_tokens: int = TOKENS) -> dict:
    """Streams one chat completion: tokens, time to first token, end time, cached prompt tokens."""
    body = {"model": model_id, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    start_t, first, tokens, cached, text = time.perf_counter(), None, 0, None, ""
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            for choice in data.get("choices") or []:
                if choice.get("delta", {}).get("content"):
                    text += choice["delta"]["content"]
                    tokens += 1
                    first = first or time.perf_counter()
            usage = data.get("usage") or {}
            if usage:
                tokens = usage.get("completion_tokens", tokens)
                cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return dict(start=start_t, ttft=(first or time.perf_counter()) - start_t, end=time.perf_counter(),
                tokens=tokens, cached=cached, text=text)


def story(run: int, client: int) -> list[dict]:
    """A fresh prompt (nothing to reuse from earlier requests but the chat template's start)."""
    return [{"role": "user", "content": f"Request {run}-{client}. Write a long story about {TOPICS[client]}."}]


def aggregate(base: str | list[str], model_id: str, clients: int, run: int) -> float:
    """Streamed tokens/s of `clients` at once; with several bases, the clients take them in turn."""
    bases = [base] if isinstance(base, str) else base
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda c: stream_chat(bases[c % len(bases)], model_id, story(run, c)), range(clients)))
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return sum(r["tokens"] for r in results) / wall


def second_turn(base: str, model_id: str, run: int) -> dict:
    """A first turn of ~1000 tokens, then the second turn repeating it with the model's answer:
    TTFT of each, and the prompt tokens the server reports as cached."""
    text = (ROOT.parent / "shared" / "texts" / "GPL-2.txt").read_text()
    first_messages = [{"role": "user", "content": f"Conversation {run}. Read this:\n{text[:4400]}\nWhat is it?"}]
    first = stream_chat(base, model_id, first_messages, 16)
    second = stream_chat(base, model_id, first_messages + [{"role": "assistant", "content": first["text"]},
                                                           {"role": "user", "content": "Who publishes it?"}], 16)
    return dict(first_ttft=first["ttft"], second_ttft=second["ttft"], cached=second["cached"])


def measure(server: str, model: Path, repeats: int, kernels: str) -> dict:
    port, log = free_port(), tempfile.TemporaryFile("w+")
    proc = start(server, model, port, log, kernels)
    base = f"http://127.0.0.1:{port}"
    try:
        model_id = first_answer(base, proc)
        settled(base)
        single, many, turns = [], [], []
        for run in range(repeats):
            single.append(aggregate(base, model_id, 1, 1000 * run))
            many.append(aggregate(base, model_id, CLIENTS, 1000 * run + 1))
            turns.append(second_turn(base, model_id, run))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = dict(single_tps=statistics.median(single), concurrent_tps=statistics.median(many),
               first_turn_ttft_s=statistics.median(t["first_ttft"] for t in turns),
               second_turn_ttft_s=statistics.median(t["second_ttft"] for t in turns),
               second_turn_cached_tokens=turns[-1]["cached"])
    out["speedup"] = out["concurrent_tps"] / out["single_tps"]
    out["second_turn_ttft_ratio"] = out["second_turn_ttft_s"] / out["first_turn_ttft_s"]
    return out


def below_avx512(kernels: str) -> bool:
    return kernels not in ("auto", "avx512vnni", "avx512bw")


def machine_description(kernels: str) -> dict:
    """The CPU and llamba's kernel path (asked of a fresh process, as the server will choose it),
    and llama-server's build."""
    probe = "import json; from llamba.engine.kernels import isa; print(json.dumps(isa.describe()))"
    ours = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "LLAMBA_KERNELS": kernels})
    binary = llama_server_binary(avx2_only=below_avx512(kernels))
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    return dict(llamba=json.loads(ours.stdout), threads=THREADS, clients=CLIENTS, tokens=TOKENS,
                llama_server=f"{binary.name}: {(version.stdout + version.stderr).strip()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["q4_0", "smollm2"])
    p.add_argument("--servers", nargs="+", default=["llamba", "llama-server-np8", "llama-server-np1"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--kernels", default="auto", help="llamba's kernel path (LLAMBA_KERNELS), default: the CPU's best")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    machine = machine_description(args.kernels)
    print("\n".join(f"{k}: {v}" for k, v in machine.items()))
    results = {}
    for name in args.models:
        model = bench_file(name)
        for server in args.servers:
            results[f"{name}/{server}"] = r = measure(server, model, args.repeats, args.kernels)
            print(f"  {name} {server}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in r.items()), flush=True)
    print("| model | server | 1 client tok/s | 8 clients tok/s | 8 / 1 | 2nd turn TTFT / 1st | cached |")
    print("|---|---|---|---|---|---|---|")
    for key, r in results.items():
        name, server = key.split("/")
        print(f"| {name} | {server} | {r['single_tps']:.1f} | {r['concurrent_tps']:.1f} | {r['speedup']:.2f} | "
              f"{r['second_turn_ttft_ratio']:.2f} | {r['second_turn_cached_tokens']} |")
    for name in args.models:
        ours, ref = results.get(f"{name}/llamba"), results.get(f"{name}/llama-server-np8")
        if ours and ref:
            print(f"{name}: llamba 8 clients / llama-server -np 8: {ours['concurrent_tps'] / ref['concurrent_tps']:.2f}")
    write_results(args.out, f"concurrency-{machine['llamba']['cpu_name']}-{machine['llamba']['kernels']}", machine,
                  results)


if __name__ == "__main__":
    main()
