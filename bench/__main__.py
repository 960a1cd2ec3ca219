"""llamba against llama.cpp (llama-cpp-python) on the same 1B-shaped files, in one run.

    python -m bench [--repeats 3] [--threads 1 2] [--quants q4_0 q8_0] [--out bench/results]

For each file and thread count the two engines alternate, each run in a fresh process
(bench/engines.py), then each behind its HTTP server (bench/http.py). Prints medians and the ratio
llamba / llama.cpp for every figure, and writes perf.json and perf.png to --out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from .synth_model import ROOT, bench_model

ENGINES = ("llamba", "llama.cpp")
# figure -> (label, True if higher is better)
FIGURES = {"tg64_tps": ("decode tg64, tokens/s", True), "pp128_tps": ("prefill pp128, tokens/s", True),
           "load_to_first_token_s": ("load to first token, s", False),
           "rss_after_512_mb": ("resident memory after 512 tokens, MB", False),
           "start_to_first_answer_s": ("server start to first answer, s", False),
           "http_ttft_s": ("HTTP time to first token, s", False),
           "http_stream_tps": ("HTTP streamed tokens/s", True)}


def run(module: str, engine: str, model: Path, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-m", module, engine, str(model), str(threads)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"{module} {engine} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(quant: str, threads: int, repeats: int, http: bool) -> dict:
    model = bench_model(quant)
    runs = {e: [] for e in ENGINES}
    for _ in range(repeats):
        for engine in ENGINES:  # alternate, so drifts in machine load hit both engines alike
            figures = run("bench.engines", engine, model, threads)
            if http:
                figures |= run("bench.http", engine, model, threads)
            runs[engine].append(figures)
            print(f"  {quant} {threads}T {engine}: " + ", ".join(f"{k}={v:.3g}" for k, v in figures.items()),
                  flush=True)
    return {e: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for e, rs in runs.items()}


def table(results: dict) -> str:
    lines = ["| model | threads | figure | llamba | llama.cpp | ratio |", "|---|---|---|---|---|---|"]
    for key, by_engine in results.items():
        quant, threads = key.split("/")
        for fig, (label, _) in FIGURES.items():
            if fig in by_engine["llamba"]:
                ours, ref = by_engine["llamba"][fig], by_engine["llama.cpp"][fig]
                lines.append(f"| {quant} | {threads} | {label} | {ours:.3g} | {ref:.3g} | {ours / ref:.2f} |")
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figs = [f for f in FIGURES if any(f in r["llamba"] for r in results.values())]
    fig, axes = plt.subplots(1, len(figs), figsize=(3.2 * len(figs), 3.6))
    for ax, f in zip(axes, figs):
        keys = [k for k in results if f in results[k]["llamba"]]
        xs = range(len(keys))
        for i, engine in enumerate(ENGINES):
            ax.bar([x + 0.4 * i for x in xs], [results[k][engine][f] for k in keys], 0.4, label=engine)
        ax.set_xticks([x + 0.2 for x in xs], [k.replace("/", "\n") + "T" for k in keys], fontsize=7)
        ax.set_title(FIGURES[f][0], fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--quants", nargs="+", default=["q4_0", "q8_0"])
    p.add_argument("--http-threads", type=int, nargs="*", default=[2], help="thread counts measured over HTTP too")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    results = {}
    for quant in args.quants:
        for threads in args.threads:
            results[f"{quant}/{threads}"] = measure(quant, threads, args.repeats, threads in args.http_threads)
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "perf.json").write_text(json.dumps(results, indent=1))
    chart(results, args.out / "perf.png")
    print(f"wrote {args.out / 'perf.json'} and {args.out / 'perf.png'}")


if __name__ == "__main__":
    main()
