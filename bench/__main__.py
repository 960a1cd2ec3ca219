"""llamba against llama.cpp (llama-cpp-python) on the same model files, in one run.

    python -m bench [--models q4_0 q8_0 smollm2 q4_k_m] [--threads 1 2] [--repeats 3]
                    [--kernels auto|avx2|...] [--long 2048 8192] [--out bench/results]

For each file and thread count the two engines alternate, each run in a fresh process
(bench/engines.py), then each behind its HTTP server (bench/http.py). Prints the machine (CPU,
SIMD features, the kernel path llamba chose and llama.cpp's build), medians and the ratio
llamba / llama.cpp for every figure, and writes perf-<cpu>-<kernels>.json and .png to --out.
--long adds, for each model and thread count, the long-prompt figures (pp2048, decode at each
depth given, bench/engines.py --long), in a process of their own per engine and repeat. Each
decode figure is also given as the share of the machine's memory bandwidth it reaches (weight
bytes read a second over the triad's, bench/bandwidth.py).

--kernels forces llamba's kernel path (LLAMBA_KERNELS). A path below AVX-512 on an AVX-512
machine is compared with llama.cpp built for AVX2 only (bench/llama_cpp_avx2.py), so that both
engines run the instructions an AVX2 machine has.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from . import write_results
from .bandwidth import bandwidth_gbs, weight_bytes_per_token
from .synth_model import BENCH_MODELS, ROOT, bench_file

ENGINES = ("llamba", "llama.cpp")
# figure -> (label, True if higher is better)
FIGURES = {"tg64_tps": ("decode tg64, tokens/s", True),
           "tg64_bandwidth": ("decode tg64, share of the memory bandwidth", True),
           "pp128_tps": ("prefill pp128, tokens/s", True),
           "load_to_first_token_s": ("load to first token, s", False),
           "rss_after_512_mb": ("resident memory after 512 tokens, MB", False),
           "start_to_first_answer_s": ("server start to first answer, s", False),
           "http_ttft_s": ("HTTP time to first token, s", False),
           "http_stream_tps": ("HTTP streamed tokens/s", True),
           "pp2048_tps": ("prefill pp2048, tokens/s", True),
           "tg32_d2048_tps": ("decode tg32 at depth 2048, tokens/s", True),
           "tg32_d8192_tps": ("decode tg32 at depth 8192, tokens/s", True),
           "rss_at_depth_mb": ("resident memory at the deepest depth, MB", False)}


def engine_env(engine: str, kernels: str) -> dict:
    """The environment of an engine's process: llamba's kernel path, or which llama.cpp build."""
    env = dict(os.environ)
    if engine == "llamba":
        env["LLAMBA_KERNELS"] = kernels
    elif kernels not in ("auto", "avx512vnni", "avx512bw"):
        from .llama_cpp_avx2 import avx2_build
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(avx2_build()), env.get("PYTHONPATH")]))
    return env


def run(module: str, engine: str, model: Path, threads: int, kernels: str, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", module, engine, str(model), str(threads), *extra], cwd=ROOT,
                         capture_output=True, text=True, timeout=3600, env=engine_env(engine, kernels))
    if out.returncode:
        raise RuntimeError(f"{module} {engine} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(model: str, threads: int, repeats: int, http: bool, kernels: str, systems: dict,
            long: list[int]) -> dict:
    path = bench_file(model)
    runs = {e: [] for e in ENGINES}
    for _ in range(repeats):
        for engine in ENGINES:  # alternate, so drifts in machine load hit both engines alike
            figures = run("bench.engines", engine, path, threads, kernels)
            systems[engine] = figures.pop("system")
            if http:
                figures |= run("bench.http", engine, path, threads, kernels)
            if long:
                figures |= {k: v for k, v in run("bench.engines", engine, path, threads, kernels, "--long",
                                                 *map(str, long)).items() if k != "system"}
            runs[engine].append(figures)
            print(f"  {model} {threads}T {engine}: " + ", ".join(f"{k}={v:.3g}" for k, v in figures.items()),
                  flush=True)
    return {e: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for e, rs in runs.items()}


def table(results: dict) -> str:
    lines = ["| model | threads | figure | llamba | llama.cpp | ratio |", "|---|---|---|---|---|---|"]
    for key, by_engine in results.items():
        model, threads = key.split("/")
        for fig, (label, _) in FIGURES.items():
            if fig in by_engine["llamba"]:
                ours, ref = by_engine["llamba"][fig], by_engine["llama.cpp"][fig]
                lines.append(f"| {BENCH_MODELS[model]} | {threads} | {label} | {ours:.3g} | {ref:.3g} "
                             f"| {ours / ref:.2f} |")
    return "\n".join(lines)


def chart(results: dict, title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figs = [f for f in FIGURES if any(f in r["llamba"] for r in results.values())]
    fig, axes = plt.subplots(1, len(figs), figsize=(3.2 * len(figs), 3.8))
    for ax, f in zip(axes, figs):
        keys = [k for k in results if f in results[k]["llamba"]]
        xs = range(len(keys))
        for i, engine in enumerate(ENGINES):
            ax.bar([x + 0.4 * i for x in xs], [results[k][engine][f] for k in keys], 0.4, label=engine)
        ax.set_xticks([x + 0.2 for x in xs], [k.replace("/", "\n") + "T" for k in keys], fontsize=7)
        ax.set_title(FIGURES[f][0], fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--models", nargs="+", default=list(BENCH_MODELS), choices=list(BENCH_MODELS))
    p.add_argument("--kernels", default="auto", help="llamba's kernel path (LLAMBA_KERNELS), default: the CPU's best")
    p.add_argument("--http-threads", type=int, nargs="*", default=[2], help="thread counts measured over HTTP too")
    p.add_argument("--long", type=int, nargs="*", default=[], metavar="DEPTH",
                   help="measure pp2048 and decode at these depths too (e.g. 2048 8192)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    results, systems = {}, {}
    bandwidth = {t: bandwidth_gbs(t) for t in args.threads}  # (in this process, before the engines run)
    print("memory bandwidth (triad): " + ", ".join(f"{t} thread(s) {gbs:.1f} GB/s" for t, gbs in bandwidth.items()))
    for model in args.models:
        for threads in args.threads:
            http = threads in args.http_threads and model in ("q4_0", "q8_0", "smollm2")
            key = f"{model}/{threads}"
            results[key] = measure(model, threads, args.repeats, http, args.kernels, systems, args.long)
            per_token = weight_bytes_per_token(bench_file(model))
            for figures in results[key].values():  # weight bytes a second over the bandwidth
                figures["tg64_bandwidth"] = figures["tg64_tps"] * per_token / (bandwidth[threads] * 1e9)
    machine = dict(systems, repeats=args.repeats, triad_gbs=bandwidth)
    print("\n".join(f"{k}: {v}" for k, v in machine.items()))
    print(table(results))
    stem = f"perf-{systems['llamba']['cpu_name']}-{systems['llamba']['kernels']}"
    write_results(args.out, stem, machine, results)
    ours = systems["llamba"]
    chart(results, f"{ours['cpu']}, llamba kernels {ours['kernels']}; llama.cpp {systems['llama.cpp']['build']}",
          args.out / f"{stem}.png")
    print(f"wrote {args.out / stem}.json and .png")


if __name__ == "__main__":
    main()
