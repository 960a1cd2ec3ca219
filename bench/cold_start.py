"""The first answer after installing: `llamba serve` with empty caches to the first chat answer,
and again with the caches that start left (a restart).

    python -m bench.cold_start [--repeats 5] [--threads 2] [--model PATH]

Each run gets a fresh NUMBA_CACHE_DIR and LLAMBA_CACHE (nothing compiled, no packed weights),
starts the server on the default model, posts one chat completion as soon as /health says ok,
lets it finish compiling in the background, stops it and starts it again on the same caches
(warm). Prints the seconds from process start to that answer for every run, fresh and warm, their
medians, and the server's own log of the last fresh and warm starts with the seconds since start
on each line (where the time goes).

Python's bytecode is as an install leaves it: pip compiles every module it installs, and Python
writes the bytecode of a module it imports from source (the editable checkout). Where neither
happened (uv installs without compiling, and this machine's shell sets PYTHONDONTWRITEBYTECODE),
every start compiled ~1.2 s of imports from source (Zen 4: warm 3.4 s, 1.8 s with bytecode). So
the runs read and write bytecode in a folder of their own (PYTHONPYCACHEPREFIX), filled by one
untimed import of the server first.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import httpx

from llamba.engine.kernels import isa
from tests.support.server import environment, llamba_server

from .http import settled


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def first_answer(threads: int, model: str | None, caches: str, bytecode: dict,
                 settle: bool = False) -> tuple[float, str]:
    """(seconds from start to the first chat answer, the server's log with times since start),
    with the numba and packed-weight caches in the folder `caches`, Python's bytecode as `bytecode`
    (environment variables) says. `settle`: before stopping, wait (up to 5 minutes) for the kernels
    it compiles in the background after the first answer, as a server that ran for a while would have."""
    with tempfile.TemporaryFile("w+") as log:
        env = {"NUMBA_CACHE_DIR": f"{caches}/numba", "LLAMBA_CACHE": f"{caches}/llamba", **bytecode}
        flags = ["--threads", str(threads), *(["--model", model] if model else [])]
        started, wall = time.perf_counter(), datetime.now()
        with llamba_server(flags, env=env, log=log) as (base, _):
            model_id = httpx.get(f"{base}/v1/models").json()["data"][0]["id"]
            r = httpx.post(f"{base}/v1/chat/completions", json={"model": model_id, "messages": QUESTION,
                                                                 "max_tokens": 16}, timeout=120)
            r.raise_for_status()
            seconds = time.perf_counter() - started
            if settle:
                settled(base)
        return seconds, since_start(read(log), wall)


def read(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()


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
    runs, logs = {"fresh": [], "warm": []}, {}
    with tempfile.TemporaryDirectory() as pycache:
        bytecode = {"PYTHONPYCACHEPREFIX": pycache, "PYTHONDONTWRITEBYTECODE": None}
        subprocess.run([sys.executable, "-c", "import llamba.app.main"], env=environment(bytecode), check=True)
        for i in range(args.repeats):
            with tempfile.TemporaryDirectory() as caches:
                for kind in ("fresh", "warm"):
                    seconds, logs[kind] = first_answer(args.threads, args.model, caches, bytecode,
                                                       settle=kind == "fresh")
                    runs[kind].append(seconds)
            print(f"run {i + 1}: fresh {runs['fresh'][-1]:.1f} s, warm {runs['warm'][-1]:.1f} s", flush=True)
    for kind in ("fresh", "warm"):
        print(f"{kind} start:\n{logs[kind]}")
    for kind in ("fresh", "warm"):
        print(f"start to first chat answer, {kind} caches: median {statistics.median(runs[kind]):.2f} s "
              f"(min {min(runs[kind]):.2f}, max {max(runs[kind]):.2f}, {len(runs[kind])} runs)")


if __name__ == "__main__":
    main()
