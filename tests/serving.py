"""Starting a real `llamba serve` on a free port, for the server tests."""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.http import free_port, llamba_server  # noqa: F401 (free_port: for the tests)
from support import SMOLLM2, model_path

API_KEY = "sk-test-llamba"


@contextmanager
def running_server(*flags: str, env: dict | None = None):
    with server_process(*flags, env=env) as (base, _):
        yield base


@contextmanager
def server_process(*flags: str, env: dict | None = None):
    """A real `llamba serve` on a free port (bench/http.py starts it): yields its base URL and its
    process, whose log is `proc.log`. A short shutdown grace, so that tests end quickly."""
    model_path(SMOLLM2)  # skips with the reason when the default model is absent
    with llamba_server(list(flags), env={"LLAMBA_SHUTDOWN_GRACE": "2", **(env or {})}, patience=180) as (base, proc):
        yield base, proc


def metrics(base: str) -> dict[str, float]:
    """The server's /metrics samples by name (one model, so one sample each; 0 for a counter
    that has not counted yet)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return defaultdict(float, {s.name: s.value for family in text_string_to_metric_families(text)
                               for s in family.samples})


def wait_until_idle(base: str, patience: float = 60) -> dict[str, float]:
    """/metrics once no request runs or waits (or after `patience` seconds: a guard against a
    hang, not a speed check — the caller asserts on the returned values)."""
    deadline = time.monotonic() + patience
    while True:
        m = metrics(base)
        if m["llamba_requests_running"] == 0 and m["llamba_requests_waiting"] == 0 or time.monotonic() > deadline:
            return m
        time.sleep(0.05)
