"""Starting a real `llamba serve` on a free port, for the server tests and the benchmarks."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import MODEL, ROOT, SMOLLM2, model_path

API_KEY = "sk-test-llamba"


def environment(changes: dict | None) -> dict:
    """This process's environment with `changes` (a value None removes the variable)."""
    return {k: v for k, v in {**os.environ, **(changes or {})}.items() if v is not None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(base: str, proc: subprocess.Popen, patience: float, path: str = "/health") -> None:
    """Until `base` + `path` says 200 (llamba's /health, llama-server's, vllm-router's /readiness);
    RuntimeError with the end of `proc.log` if the process ends or `patience` seconds pass first."""
    deadline = time.monotonic() + patience
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.log.seek(0)
            raise RuntimeError(f"{' '.join(map(str, proc.args[:4]))} did not become ready: {proc.log.read()[-2000:]}")
        try:
            if httpx.get(f"{base}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


@contextmanager
def llamba_server(flags: list[str], env: dict | None = None, log=None, patience: float = 300, port: int = 0):
    """`llamba serve` on `port` (a free loopback port by default), its log (the access log too) to
    `log`, a file open for writing and reading (a temporary one by default, kept as `proc.log`):
    yields (base URL, process) once /health says ok; terminates it after (SIGTERM: it drains first).
    `env` is added to this process's environment (a value None removes the variable)."""
    port = port or free_port()
    log = log or tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "llamba", "serve", "--port", str(port), *flags], cwd=ROOT,
                            stdout=log, stderr=log, env=environment(env))
    proc.log = log
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, proc, patience)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()


def answered_statuses(server_log: str, paths: str = "/") -> Counter:
    """Statuses of the requests a server answered, from its access log, for paths starting with
    `paths` (its own readiness polls of /health answer 503 while it loads)."""
    return Counter(re.findall(rf'"[A-Z]+ {re.escape(paths)}\S* HTTP/1\.1" (\d{{3}})', server_log))


@contextmanager
def running_server(*flags: str, env: dict | None = None):
    with server_process(*flags, env=env) as (base, _):
        yield base


@contextmanager
def server_process(*flags: str, env: dict | None = None, port: int = 0):
    """A real `llamba serve` on a free port: yields its base URL and its
    process, whose log is `proc.log`. A short shutdown grace, so that tests end quickly."""
    default = model_path(SMOLLM2)  # skips with the reason when the default model is absent
    with tempfile.TemporaryDirectory() as folder:
        if os.environ.get("LLAMBA_TEST_MODELS_DIR") and "--model" not in flags:
            # the same tests with the default model in a models folder, loaded by the first request
            (Path(folder) / f"{MODEL}.gguf").symlink_to(default)
            flags = (*flags, "--models-dir", folder)
        with llamba_server(list(flags), env={"LLAMBA_SHUTDOWN_GRACE": "2", **(env or {})}, patience=180,
                           port=port) as (base, proc):
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
