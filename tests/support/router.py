"""vllm-router (PyPI `vllm-router`, pinned in constraints.txt) in front of real `llamba serve`
replicas on loopback, for the router tests and the replicas benchmark."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager

import yaml

from tests.support import ROOT, missing
from tests.support.server import answered_statuses, free_port, server_process, wait_until_healthy


def deployed_flags() -> list[str]:
    """The flags docker-compose.yml gives the router after its policy (retries, circuit breaker,
    balancing), which the tests run it with."""
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["router"]["command"]
    return command[command.index("--cb-failure-threshold"):]


@contextmanager
def replicas(count: int, *flags: str):
    """`count` replicas of the default model, one compute thread each: yields [(base URL, process)]."""
    with ExitStack() as stack:
        yield [stack.enter_context(server_process("--threads", "1", *flags)) for _ in range(count)]


@contextmanager
def vllm_router(worker_urls: list[str], policy: str, *flags: str, replicas_host: str = "", patience: float = 60):
    """vllm-router on a free port with `policy` over `worker_urls`, checking each worker's health
    every second: yields its base URL once `/readiness` says 200 (one healthy worker suffices).
    With `replicas_host` ("HOST:PORT") instead, started as docker-compose.yml starts it: by
    deploy/router/replicas.py, over every address the name resolves to."""
    program = shutil.which("vllm-router")
    if program is None:
        missing("vllm-router (pip install -c constraints.txt vllm-router)")
    port = free_port()
    log = tempfile.TemporaryFile("w+")
    workers = [program, "--worker-urls", *worker_urls] if not replicas_host else \
        [sys.executable, str(ROOT / "deploy" / "router" / "replicas.py"), replicas_host, "--"]
    proc = subprocess.Popen([*workers, "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
                             "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
                             "--worker-startup-check-interval", "1", "--health-check-interval-secs", "1", *flags],
                            stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, proc, patience, path="/readiness")
        yield base
    except BaseException:
        log.seek(0)  # what the router saw, beside the test's own failure
        print(f"vllm-router's log: {log.read()[-6000:]}")
        raise
    finally:
        proc.terminate()
        proc.wait(30)


def router_calls(proc: subprocess.Popen) -> dict[str, dict[str, int]]:
    """The statuses a replica answered to the calls a router makes before routing (render, tokenize,
    load), by path, from its access log."""
    proc.log.seek(0)
    log = proc.log.read()
    return {path: dict(answered_statuses(log, path)) for path in
            ("/v1/chat/completions/render", "/v1/completions/render", "/v1/responses/render", "/tokenize", "/get_load")}
