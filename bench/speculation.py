"""Speculation from the prompt (engine/speculation.py): greedy decode with drafts against without,
on the model runner in this process, alternating, and whether the answers are the same.

    python -m bench.speculation [--threads 2] [--repeats 3] [--kinds edit free-form '8 clients'] [--out bench/results]

Prompts that ask for a given text back with a small edit (a 20-line function with a variable
renamed, a paragraph with a word changed), free-form prompts, and 8 clients at once (the 8
free-form and edit prompts together). Every answer is greedy, with logprobs, up to MAX_TOKENS;
for each kind prints the medians of the decoding time (first token to last, summed over the
answers; for the 8 clients, the whole time) with and without, their ratio (above 1: speculation
is faster), the drafted and accepted tokens, and whether every answer's token ids and
logprobs were identical. Default model (SmolLM2-135M-Instruct Q4_1).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from tests.support.edits import EDITS, FREE

from . import write_results

MAX_TOKENS = 400


async def answer(runner, lm, text: str, params) -> tuple[list, int, int, float]:
    """(token ids and logprobs, drafted, accepted, seconds from the first token to the last)."""
    job = runner.submit([lm.chat_prompt_ids([{"role": "user", "content": text}])], params)
    events, first = [], None
    async for event in runner.stream(job):
        events.append((event.token_id, event.logprob))
        first = first or time.perf_counter()
    return events, job.drafted_tokens, job.accepted_tokens, time.perf_counter() - first


async def timed(lm, threads: int, speculative: bool, texts: list[str], params, together: bool):
    """(seconds, answers, drafted, accepted) of the texts' answers, on a runner of their own (two
    runners' threads alive at once ran the kernels slower). The seconds: one after another, the
    sum of their decoding times (from the first token to the last: prefill is the same with or
    without drafts); together, the whole time, prompts included."""
    from tests.support import model_runner
    runner = model_runner(lm, n_ctx=2048, parallel=8, threads=threads, speculative=speculative)
    start = time.perf_counter()
    if together:
        results = await asyncio.gather(*(answer(runner, lm, t, params) for t in texts))
        seconds = time.perf_counter() - start
    else:
        results = [await answer(runner, lm, t, params) for t in texts]
        seconds = sum(r[3] for r in results)
    runner.close(wait=True)
    return seconds, [r[0] for r in results], sum(r[1] for r in results), sum(r[2] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=["edit", "free-form", "8 clients"])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()

    from llamba.engine.kernels import isa
    from llamba.engine.loader import LoadedModel, default_model_path
    from llamba.engine.sampling import SamplingParams

    lm = LoadedModel.load(default_model_path())
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, logprobs=1)
    kinds = {"edit": (EDITS, False), "free-form": (FREE, False), "8 clients": ((FREE + EDITS)[:8], True)}
    kinds = {kind: kinds[kind] for kind in args.kinds}
    asyncio.run(timed(lm, args.threads, False, FREE[:1], params, False))  # compiles the kernels
    machine = isa.describe() | {"threads": args.threads}
    print(f"{machine['cpu']}, kernel path {machine['kernels']}, {args.threads} threads, greedy, "
          f"max_tokens {MAX_TOKENS}, medians of {args.repeats}")
    results = {}
    for kind, (texts, together) in kinds.items():
        runs = {False: [], True: []}
        for _ in range(args.repeats):
            for spec in (False, True):  # alternating
                runs[spec].append(asyncio.run(timed(lm, args.threads, spec, texts, params, together)))
        same = all(off[1] == on[1] for off, on in zip(runs[False], runs[True]))
        off, on = (statistics.median(r[0] for r in runs[spec]) for spec in (False, True))
        tokens = sum(len(a) for a in runs[True][0][1])
        drafted, accepted = runs[True][0][2], runs[True][0][3]
        results[kind] = dict(seconds_without=off, seconds_with=on, ratio=off / on, tokens=tokens,
                             drafted=drafted, accepted=accepted, identical=same)
        print(f"{kind:10s} {len(texts)} prompts, {tokens} tokens: without {off:.2f} s, with {on:.2f} s, "
              f"ratio {off / on:.2f}; drafted {drafted}, accepted {accepted}; identical: {same}")
    write_results(args.out, f"speculation-{machine['cpu_name']}-{machine['kernels']}", machine, results)


if __name__ == "__main__":
    main()
