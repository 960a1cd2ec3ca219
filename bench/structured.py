"""What constrained decoding costs: decode tokens/s with a JSON schema against without, same model,
same run, alternating (the model's own runner, in this process).

    python -m bench.structured [--models smollm2 q4_0] [--repeats 3] [--tokens 128]

The constrained request follows a schema that keeps the model writing (an array of at least 500
short strings), so both generate `--tokens` tokens; the figure is tokens/s after the first token.
Prints medians and the ratio, and writes bench/results/structured-<cpu>-<kernels>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import replace
from pathlib import Path

from llamba.engine.grammar import json_schema_grammar
from llamba.engine.kernels import isa
from llamba.engine.loader import LoadedModel
from llamba.engine.scheduler import ModelRunner
from tests.support import model_runner

from . import write_results
from .synth_model import ROOT, bench_file

SCHEMA = {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 500}


async def decode_rate(runner: ModelRunner, prompt: list[int], params) -> float:
    times = []
    async for _ in runner.stream(runner.submit([prompt], params)):
        times.append(time.perf_counter())
    return (len(times) - 1) / (times[-1] - times[0])


def measure(name: str, repeats: int, tokens: int) -> dict:
    lm = LoadedModel.load(bench_file(name))
    runner = model_runner(lm, n_ctx=2048, parallel=1)
    prompt = lm.chat_prompt_ids([{"role": "user", "content": "List as many fruits as you can, in JSON."}])
    free = replace(lm.sampling, temperature=0, max_tokens=tokens, ignore_eos=True)
    constrained = replace(free, grammar=json_schema_grammar(SCHEMA))
    rates = {"free": [], "json_schema": []}
    for _ in range(repeats + 1):  # the first round warms up (compiles the kernels, the grammar tokenizer)
        for kind, params in (("free", free), ("json_schema", constrained)):
            rates[kind].append(asyncio.run(decode_rate(runner, prompt, params)))
    runner.close()
    out = {kind: statistics.median(r[1:]) for kind, r in rates.items()}
    out["ratio"] = out["json_schema"] / out["free"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2", "q4_0"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    machine = isa.describe()
    print("\n".join(f"{k}: {v}" for k, v in machine.items()))
    results = {}
    for name in args.models:
        results[name] = r = measure(name, args.repeats, args.tokens)
        print(f"{name}: free {r['free']:.1f} tok/s, json_schema {r['json_schema']:.1f} tok/s, ratio {r['ratio']:.2f}",
              flush=True)
    write_results(args.out, f"structured-{machine['cpu_name']}-{machine['kernels']}", machine, results)


if __name__ == "__main__":
    main()
