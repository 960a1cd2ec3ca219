"""The first answer after installing: `llamba serve` with empty caches to the first chat answer.

    python -m bench.cold_start [--repeats 5] [--threads 2] [--model PATH]

Each run gets a fresh NUMBA_CACHE_DIR and LLAMBA_CACHE (nothing compiled, no packed weights),
starts the server on the default model, and posts one chat completion as soon as /health says
ok. Prints the seconds from process start to that answer for every run, their median, and the
server's own log of one run with the seconds since start on each line (where the time goes).
"""
from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import datetime

import httpx

from llamba.engine.kernels import isa
from tests.support.server import llamba_server


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def cold_run(threads: int, model: str | None) -> tuple[float, str]:
    """(seconds from start to the first chat answer, the server's log with times since start)."""
    with tempfile.TemporaryDirectory() as caches, tempfile.TemporaryFile("w+") as log:
        env = {"NUMBA_CACHE_DIR": f"{caches}/numba", "LLAMBA_CACHE": f"{caches}/llamba"}
        flags = ["--threads", str(threads), *(["--model", model] if model else [])]
        started, wall = time.perf_counter(), datetime.now()
        with llamba_server(flags, env=env, log=log) as (base, _):
            model_id = httpx.get(f"{base}/v1/models").json()["data"][0]["id"]
            r = httpx.post(f"{base}/v1/chat/completions", json={"model": model_id, "messages": QUESTION,
                                                                 "max_tokens": 16}, timeout=120)
            r.raise_for_status()
            seconds = time.perf_counter() - started
        log.seek(0)
        return seconds, since_start(log.read(), wall)


def since_start(text: str, wall: datetime) -> str:
    """The log's lines prefixed with the seconds since the process started (its own timestamps)."""
    lines = []
    for line in text.splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (.*)", line)
        if m:
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            lines.append(f"{(at - wall).total_seconds():6.2f}  {m.group(2)}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", help="a GGUF file (default: the default model)")
    args = p.parse_args()
    cpu = isa.describe()
    print(f"cpu: {cpu['cpu']} ({cpu['kernels']} kernels), {args.threads} threads")
    runs = []
    for i in range(args.repeats):
        seconds, log = cold_run(args.threads, args.model)
        runs.append(seconds)
        print(f"run {i + 1}: {seconds:.1f} s", flush=True)
    print(log)
    print(f"start to first chat answer, fresh caches: median {statistics.median(runs):.1f} s "
          f"(min {min(runs):.1f}, max {max(runs):.1f}, {len(runs)} runs)")


if __name__ == "__main__":
    main()
