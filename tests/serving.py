"""Starting a real `llamba serve` on a free port, for the server tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support import ROOT, SMOLLM2, model_path

API_KEY = "sk-test-llamba"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(*flags: str, env: dict | None = None):
    with server_process(*flags, env=env) as (base, _):
        yield base


@contextmanager
def server_process(*flags: str, env: dict | None = None):
    """A real `llamba serve` on a free port: yields its base URL and its process."""
    model_path(SMOLLM2)  # skips with the reason when the default model is absent
    port = free_port()
    log = tempfile.TemporaryFile("w+")  # (a pipe nobody reads would fill up and stall the server)
    proc = subprocess.Popen([sys.executable, "-m", "llamba", "serve", "--port", str(port), *flags],
                            cwd=ROOT, env={**os.environ, "LLAMBA_SHUTDOWN_GRACE": "2", **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    proc.log = log
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited: {log.read()}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("server did not become ready")
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
