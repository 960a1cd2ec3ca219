"""Fresh processes whose results a test only reads, started when the session starts.

Some checks run in fresh Python processes that spend minutes compiling kernels on one core (every
kernel for another instruction-set path, a warm-up from empty caches, a wheel installed in a new
virtual environment), while the tests around them leave the machine's second core mostly idle. A
module whose tests are selected names that work in `start_in_background()` (tests/conftest.py
calls it once collection is done; its tests call it again for the jobs' futures, so it is cached);
it runs two jobs at a time at the lowest priority, so that it takes only what the tests in front
leave, and a test waits for its job's result when it gets there.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from .fixtures import ROOT

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="background")
_running: set[subprocess.Popen] = set()
_lock = threading.Lock()
_folder: Path | None = None


def folder() -> Path:
    """This session's scratch folder for background work (removed when the session ends)."""
    global _folder
    with _lock:
        if _folder is None:
            _folder = Path(tempfile.mkdtemp(prefix="llamba-background-"))
        return _folder


def submit(job: Callable, *args) -> Future:
    """job(*args) in the background; jobs start in the order submitted (one may wait for one
    submitted before it: the other worker is running that one)."""
    return _pool.submit(job, *args)


def run(args: list, env: dict | None = None, timeout: int = 1500, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """args in a fresh process at the lowest priority, with env added to this one's: its output."""
    proc = subprocess.Popen(args, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_idle)
    with _lock:
        _running.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        stdout, stderr = proc.communicate()
        stderr += f"\n(killed after {timeout} s)"
    finally:
        with _lock:
            _running.discard(proc)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _idle() -> None:
    """In the child: run only on a core nothing else wants (SCHED_IDLE), in a process group of its
    own (stop() ends its children too) but in this session: Linux schedules each session (its
    autogroup) fairly against the others whatever their priorities, so a session of its own would
    take a whole core's share from the tests."""
    os.setpgid(0, 0)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop() -> None:
    """At the end of the session: drop the jobs not started, end the running ones, remove the folder."""
    _pool.shutdown(wait=False, cancel_futures=True)
    with _lock:
        for proc in _running:
            _kill(proc)
    _pool.shutdown(wait=True)
    if _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)
