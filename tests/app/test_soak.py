"""The soak (bench/soak.py, 2,000 requests at concurrency 32 in the README) at a small scale: a mix
of chat and completions, streamed and not, logprobs, stop strings, clients hanging up — no status
>= 500, every request finishes, every stream read whole ends with [DONE], and the server idle
with every KV slot free at the end."""
import asyncio

from bench.soak import soak, summarize
from serving import server_process

MODEL = "smollm2-135m-instruct"


def test_a_small_soak_leaves_no_errors_and_an_idle_server():
    with server_process("--parallel", "4", "--queue-size", "64", "--ctx", "1024") as (base, proc):
        run = asyncio.run(soak(base, proc.pid, MODEL, requests=120, concurrency=12, seed=3))
        proc.log.seek(0)
        run["server_log"] = proc.log.read()
    summary, failures = summarize(run)
    failures = [f for f in failures if not f.startswith("resident memory")]  # (too few requests to judge)
    assert not failures, (failures, summary)
    assert summary["hung_up"] > 0 and summary["streams_read_whole"] > 0
    assert set(summary["statuses"]) <= {"200", "hung up before an answer"}, summary["statuses"]
