"""`--threads` limits the model's compute: the server's CPU time over a long generation, in all
and per thread. The machine may be busy with other work, so the threads are compared with each
other, not with the clock: with one compute thread, one thread does the work; with two, the
second busiest thread computes a good share of what the busiest does."""
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.support import MODEL
from tests.support.server import server_process


def cpu_seconds_per_thread(pid: int) -> dict[str, float]:
    """User + system CPU time of each thread of the process so far."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        times[task.name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return times


def cores_used_while_generating(threads: int) -> tuple[float, list[float]]:
    """(cores in all per second of a long generation, each thread's CPU time, busiest first)."""
    with server_process("--threads", str(threads), "--ctx", "2048") as (base, proc):
        body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 700, "ignore_eos": True,
                "temperature": 0, "stream": True}
        with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=300) as response:
            lines = response.iter_lines()
            for _ in zip(range(50), lines):  # let generation get going
                pass
            before, wall = cpu_seconds_per_thread(proc.pid), time.monotonic()
            for _ in zip(range(500), lines):  # a few seconds: hundreds of clock ticks per thread
                pass
            after, wall = cpu_seconds_per_thread(proc.pid), time.monotonic() - wall
    per_thread = sorted((after[t] - before.get(t, 0.0) for t in after), reverse=True)
    return sum(per_thread) / wall, per_thread


def test_one_thread_uses_one_core():
    total, seconds = cores_used_while_generating(1)
    # (the event loop writing ~150 events a second takes a few percent of what the compute does)
    assert total <= 1.2 and seconds[1] < 0.3 * seconds[0], (total, seconds)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_two_threads_compute_on_two_cores():
    total, seconds = cores_used_while_generating(2)
    assert seconds[1] >= 0.3 * seconds[0], (total, seconds)
