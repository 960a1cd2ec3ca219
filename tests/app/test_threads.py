"""`--threads` limits the model's compute: the server's CPU time per second of generation."""
import os
import time

import httpx
import pytest

from serving import server_process

MODEL = "smollm2-135m-instruct"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of the process so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cores_used_while_generating(threads: int) -> float:
    with server_process("--threads", str(threads), "--ctx", "2048") as (base, proc):
        body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 1500, "ignore_eos": True,
                "temperature": 0, "stream": True}
        with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=300) as response:
            lines = response.iter_lines()
            for _ in zip(range(50), lines):  # let generation get going
                pass
            cpu, wall = cpu_seconds(proc.pid), time.monotonic()
            for _ in zip(range(1000), lines):
                pass
            return (cpu_seconds(proc.pid) - cpu) / (time.monotonic() - wall)


def test_one_thread_uses_one_core():
    assert cores_used_while_generating(1) <= 1.2


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_two_threads_use_both_cores():
    assert cores_used_while_generating(2) >= 1.5
