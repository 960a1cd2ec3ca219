"""Peak resident memory under load: 8 requests of ~2,900 prompt tokens in flight at once, default
model, llamba (`--parallel 8 --ctx 4096`) against llama-server (`-np 8 -c 32768`: its context is
shared by the slots, so each may hold 4,096), 2 threads each, in one run.

    python -m bench.memory [--model smollm2] [--kv-type f16] [--repeats 1]

Each client's prompt is a different slice of a long text (nothing for a prefix cache to share);
each asks for 16 tokens. Peak RSS is the server process's VmHWM after the load. Prints the CPU,
both figures and their ratio, and writes bench/results/memory-<cpu>-<kv type>.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from . import write_results
from .concurrency import THREADS, below_avx512
from tests.support.server import free_port

from .http import ROOT, first_answer
from .llama_server import llama_server_binary
from .synth_model import bench_file

CLIENTS, CTX, PROMPT_CHARS = 8, 4096, 13_000  # ~2,900 tokens of English for SmolLM2's tokenizer


def start(server: str, model: Path, port: int, log, kv_type: str) -> subprocess.Popen:
    if server == "llamba":
        cmd = [sys.executable, "-m", "llamba", "serve", "--model", str(model), "--threads", str(THREADS),
               "--port", str(port), "--ctx", str(CTX), "--parallel", str(CLIENTS)]
        env = {"LLAMBA_KV_CACHE_TYPE": kv_type}
    else:
        cmd = [str(llama_server_binary(avx2_only=below_avx512("auto"))), "-m", str(model), "-t", str(THREADS),
               "-tb", str(THREADS), "--port", str(port), "-np", str(CLIENTS), "-c", str(CTX * CLIENTS),
               "-ctk", kv_type, "-ctv", kv_type]
        env = {}
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, env={**os.environ, **env})


def status_mb(pid: int, field: str) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def prompt(client: int) -> list[dict]:
    text = (ROOT.parent / "shared" / "texts" / "GPL-2.txt").read_text()
    start = client * 500  # a different slice per client
    return [{"role": "user", "content": f"Reader {client}: {text[start:start + PROMPT_CHARS]}\nSummarize it."}]


def load(base: str, model_id: str) -> list[int]:
    def one(client: int) -> int:
        body = {"model": model_id, "messages": prompt(client), "max_tokens": 16, "temperature": 0}
        r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=1200)
        r.raise_for_status()
        return r.json()["usage"]["prompt_tokens"]
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(CLIENTS)))


def measure(server: str, model: Path, kv_type: str) -> dict:
    port, log = free_port(), tempfile.TemporaryFile("w+")
    proc = start(server, model, port, log, kv_type)
    base = f"http://127.0.0.1:{port}"
    try:
        model_id = first_answer(base, proc)
        idle = status_mb(proc.pid, "VmRSS")
        began = time.perf_counter()
        tokens = load(base, model_id)
        return dict(idle_rss_mb=idle, peak_rss_mb=status_mb(proc.pid, "VmHWM"), prompt_tokens=tokens,
                    load_s=time.perf_counter() - began)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--kv-type", default="f16", help="both servers' KV cache type (llama-server -ctk/-ctv)")
    p.add_argument("--servers", nargs="+", default=["llamba", "llama-server"])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    from llamba.engine.kernels import isa
    machine = dict(isa.describe(), threads=THREADS, clients=CLIENTS, ctx=CTX, kv_type=args.kv_type)
    print("\n".join(f"{k}: {v}" for k, v in machine.items()))
    results = {s: measure(s, bench_file(args.model), args.kv_type) for s in args.servers}
    for server, r in results.items():
        print(f"{server}: idle {r['idle_rss_mb']:.0f} MB, peak {r['peak_rss_mb']:.0f} MB, "
              f"prompts {min(r['prompt_tokens'])}..{max(r['prompt_tokens'])} tokens, {r['load_s']:.1f} s")
    if len(results) == 2:
        ours, ref = (r["peak_rss_mb"] for r in results.values())
        print(f"peak RSS llamba / llama-server: {ours / ref:.2f}")
    write_results(args.out, f"memory-{machine['cpu_name']}-{args.kv_type}", machine, results)


if __name__ == "__main__":
    main()
