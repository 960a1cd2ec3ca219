"""Past one machine: two replicas behind vllm-router against one replica, 8 streaming clients.

    python -m bench.replicas [--repeats 3]

Each replica is `llamba serve` on the default model with one compute thread (--parallel 8), so
two replicas use the two cores one replica cannot: this machine's ceiling is 2x. Every client
streams a chat completion of 64 tokens (ignore_eos) to a fresh prompt (bench/concurrency.py's
measure). Each run measures one replica alone, the two with the clients split by hand (what the
machine allows two replicas, the router aside) and the router over the two with each policy;
medians of --repeats. Prints the CPU and the ratios, and writes bench/results/replicas-<cpu>.json.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from llamba.engine.kernels import isa
from tests.support import MODEL
from tests.support.router import deployed_flags, replicas, vllm_router

from . import write_results
from .concurrency import CLIENTS, TOKENS, aggregate
from .synth_model import ROOT


# the router's policies measured: round robin, and cache-aware as vLLM ships it and as deploy/
# runs it (retries and circuit breaker, which cost nothing here, and load balanced once replicas
# run 3 requests apart, where vLLM's default waits for 64: docker-compose.yml says why)
ROUTERS = {"round_robin": ("round_robin",), "cache_aware": ("cache_aware",),
           "cache_aware, deploy/'s flags": ("cache_aware", *deployed_flags())}
LABELS = {"one": "one replica, 1 thread", "split": "2 replicas, clients split evenly by hand (no router)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    machine = dict(llamba=isa.describe(), threads_per_replica=1, clients=CLIENTS, tokens=TOKENS)
    print("\n".join(f"{k}: {v}" for k, v in machine.items()))
    runs: dict[str, list[float]] = {name: [] for name in ("one", "split", *ROUTERS)}
    with replicas(2, "--parallel", str(CLIENTS)) as servers:
        bases = [base for base, _ in servers]
        for repeat in range(args.repeats):
            run = 10_000 * repeat
            runs["one"].append(aggregate(bases[0], MODEL, CLIENTS, run))
            runs["split"].append(aggregate(bases, MODEL, CLIENTS, run + 1))  # (by hand: no router)
            for k, (name, flags) in enumerate(ROUTERS.items()):
                with vllm_router(bases, *flags) as router:
                    runs[name].append(aggregate(router, MODEL, CLIENTS, run + 1000 * (k + 2)))
            print(f"  run {repeat + 1}: " + ", ".join(f"{name} {v[-1]:.1f} tok/s" for name, v in runs.items()),
                  flush=True)
    medians = {name: statistics.median(v) for name, v in runs.items()}
    print("| served by | 8 clients tok/s (median) | / one replica |")
    print("|---|---|---|")
    for name, tps in medians.items():
        label = LABELS.get(name, f"vllm-router --policy {name}, 2 replicas")
        print(f"| {label} | {tps:.1f} | {tps / medians['one']:.2f} |")
    write_results(args.out, f"replicas-{machine['llamba']['cpu_name']}", machine,
                  dict(runs=runs, medians=medians, ratios={n: t / medians["one"] for n, t in medians.items()}))


if __name__ == "__main__":
    main()
