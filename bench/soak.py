"""Soak: many clients against a real `llamba serve` on loopback, for a bounded number of requests.

    python -m bench.soak --requests 2000 --concurrency 32 [--model PATH] [--threads 2]

A mix of chat and text completions, streamed and not, with and without logprobs and stop
strings, random max_tokens; 10% of the clients hang up at a random moment. Records every status
code and latency, whether every stream that was read to its end ended with [DONE], the server's
/metrics gauges once it is idle, and its resident memory after warm-up, at the middle and at the
end. Writes bench/results/soak-<model>.json and exits 1 if any check fails: no status >= 500, no
request that never finishes, requests running and waiting and KV slots busy back to 0, resident
memory at the end within 5% of the middle."""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.support.server import answered_statuses, llamba_server

ROOT = Path(__file__).resolve().parent.parent
REQUEST_TIMEOUT = 300
QUESTIONS = ["What is the capital of France?", "Name three colours.", "Write a haiku about the sea.",
             "Explain rain to a child.", "Count from one to ten.", "What is 12 times 12?"]


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request_body(rng: random.Random, model: str) -> tuple[str, dict]:
    """A random request: its path and body."""
    body = {"model": model, "max_tokens": rng.randint(1, 64), "stream": rng.random() < 0.5,
            "temperature": rng.choice([0, 0.7, 1.0]), "seed": rng.randint(0, 1000)}
    if rng.random() < 0.3:
        body["stop"] = rng.choice(["\n", ".", ["\n\n", "!"]])
    if rng.random() < 0.5:
        body["messages"] = [{"role": "user", "content": rng.choice(QUESTIONS)}]
        if rng.random() < 0.3:
            body.update(logprobs=True, top_logprobs=rng.randint(0, 5))
        return "/v1/chat/completions", body
    body["prompt"] = rng.choice(QUESTIONS)
    if rng.random() < 0.3:
        body["logprobs"] = rng.randint(0, 5)
    return "/v1/completions", body


async def one_request(client: httpx.AsyncClient, rng: random.Random, model: str) -> dict:
    path, body = request_body(rng, model)
    hang_up = rng.random() < 0.1
    started = time.monotonic()
    result = {"path": path, "stream": body["stream"], "hung_up": hang_up}

    async def send():
        if not body["stream"]:
            r = await client.post(path, json=body)
            result["status"] = r.status_code
            return
        async with client.stream("POST", path, json=body) as r:
            result["status"] = r.status_code
            last = None
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    last = line[6:]
            result["done"] = last == "[DONE]" if r.status_code == 200 else None
    try:
        if hang_up:
            try:
                await asyncio.wait_for(send(), timeout=rng.uniform(0, 1.0))
            except asyncio.TimeoutError:
                pass  # the client went away mid-request: the connection is closed
        else:
            await asyncio.wait_for(send(), timeout=REQUEST_TIMEOUT)
    except asyncio.TimeoutError:
        result["status"] = "never finished"
    except httpx.HTTPError as e:
        result["status"] = f"transport error: {type(e).__name__}"
    result["seconds"] = time.monotonic() - started
    return result


async def soak(base: str, pid: int, model: str, requests: int, concurrency: int, seed: int) -> dict:
    rng = random.Random(seed)
    results, memory = [], {}
    async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT,
                                 limits=httpx.Limits(max_connections=concurrency * 2)) as client:
        await client.post("/v1/completions", json={"model": model, "prompt": "Hi", "max_tokens": 4})  # warm
        memory["start_mb"] = resident_mb(pid)
        todo = iter(range(requests))

        async def client_loop():
            for i in todo:
                results.append(await one_request(client, random.Random(rng.random()), model))
                if len(results) == requests // 2:
                    memory["middle_mb"] = resident_mb(pid)
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        for _ in range(600):  # the server's own view, once it is idle (the hung-up requests end)
            gauges = await metrics(client)
            if not gauges["llamba_requests_running"] and not gauges["llamba_requests_waiting"]:
                break
            await asyncio.sleep(0.1)
        memory["end_mb"] = resident_mb(pid)
    return {"results": results, "memory": memory, "gauges": gauges}


async def metrics(client: httpx.AsyncClient) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families
    text = (await client.get("/metrics")).text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name in ("llamba_requests_running", "llamba_requests_waiting", "llamba_kv_slots_busy",
                          "llamba_requests_rejected_total", "llamba_requests_total")}


def summarize(run: dict) -> tuple[dict, list[str]]:
    results, memory, gauges = run["results"], run["memory"], run["gauges"]
    statuses = Counter(str(r.get("status", "hung up before an answer")) for r in results)
    read_whole = [r for r in results if not r["hung_up"] and r["stream"] and r.get("status") == 200]
    latencies = sorted(r["seconds"] for r in results if not r["hung_up"] and r.get("status") == 200)
    summary = {
        "requests": len(results), "hung_up": sum(r["hung_up"] for r in results), "statuses": dict(statuses),
        "streams_read_whole": len(read_whole), "streams_without_done": sum(not r["done"] for r in read_whole),
        "latency_s": {"median": statistics.median(latencies), "p95": latencies[int(0.95 * (len(latencies) - 1))],
                      "max": latencies[-1]} if latencies else {},
        "gauges_at_end": gauges, "memory": memory,
        "memory_end_over_middle": memory["end_mb"] / memory.get("middle_mb", memory["end_mb"]),
    }
    failures = []
    if "server_log" in run:  # the server's own account, hung-up requests included
        answered = answered_statuses(run["server_log"], "/v1/")
        summary["server_statuses"] = dict(sorted(answered.items()))
        if any(int(status) >= 500 for status in answered):
            failures.append(f"the server answered >= 500: {summary['server_statuses']}")
        if "Traceback" in run["server_log"]:
            lines = run["server_log"][run["server_log"].index("Traceback"):].splitlines()
            end = next((i for i, line in enumerate(lines[1:], 1) if not line.startswith(" ")), len(lines) - 1)
            failures.append("the server logged a traceback, ending:\n" + "\n".join(lines[max(1, end - 8):end + 1]))
    server_errors = {s: n for s, n in statuses.items() if s.isdigit() and int(s) >= 500}
    if server_errors:
        failures.append(f"statuses >= 500: {server_errors}")
    unfinished = {s: n for s, n in statuses.items() if not s.isdigit() and not s.startswith("hung up")}
    if unfinished:
        failures.append(f"requests that never finished: {unfinished}")
    if summary["streams_without_done"]:
        failures.append(f"{summary['streams_without_done']} streams read to their end without [DONE]")
    busy = {k: v for k, v in gauges.items() if k in ("llamba_requests_running", "llamba_requests_waiting",
                                                     "llamba_kv_slots_busy") and v}
    if busy:
        failures.append(f"not idle at the end: {busy}")
    if abs(summary["memory_end_over_middle"] - 1) > 0.05:
        failures.append(f"resident memory moved {100 * (summary['memory_end_over_middle'] - 1):+.1f}% "
                        "from the middle to the end")
    return summary, failures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--model", type=Path, default=None, help="a GGUF file (default: the default model)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    from llamba.engine.kernels import isa
    model_id = args.model.stem if args.model else "smollm2-135m-instruct"
    flags = ["--threads", str(args.threads), "--parallel", str(args.parallel), "--queue-size", "64", "--ctx", "1024"]
    if args.model:
        flags += ["--model", str(args.model)]
    with tempfile.TemporaryFile("w+") as log:
        with llamba_server(flags, log=log) as (base, proc):
            started = time.monotonic()
            run = asyncio.run(soak(base, proc.pid, model_id, args.requests, args.concurrency, args.seed))
            seconds = time.monotonic() - started
        log.seek(0)
        run["server_log"] = log.read()
    summary, failures = summarize(run)
    summary.update(model=model_id, concurrency=args.concurrency, threads=args.threads, seconds=round(seconds),
                   machine=isa.describe(), failures=failures)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"soak-{model_id}.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "machine"}, indent=1))
    print("PASS" if not failures else "FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
