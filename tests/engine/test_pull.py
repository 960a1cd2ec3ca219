"""`llamba pull` and `--model hf://...` through the real huggingface_hub client, against a hub on
loopback (tests/support/hub.py) serving a repository of the small models here: the file lands in
the models folder, a second pull fetches nothing, a download cut short resumes where it stopped,
a quantization tag picks the file, and `llamba serve --model hf://...` serves it."""
import os
import subprocess
import sys

import httpx
import pytest

from llamba.engine.hub import HubError, pick_file
from tests.support import ROOT, model_path
from tests.support.hub import loopback_hub
from tests.support.server import llamba_server

REPO = "llamba-tests/synth-small-GGUF"
Q4_0, Q8_0 = "synth-llama3-small-q4_0", "synth-llama3-small-q8_0"


@pytest.fixture
def files():
    return {"synth-small-Q4_0.gguf": model_path(Q4_0), "synth-small-Q8_0.gguf": model_path(Q8_0),
            "README.md": ROOT / "README.md"}


def pull(endpoint: str, models_dir, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
           "HF_HOME": str(models_dir / "hf-home")}
    return subprocess.run([sys.executable, "-m", "llamba", "pull", *args, "--models-dir", str(models_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def downloads(log, name: str) -> list:
    return [entry for entry in log if entry[0] == "GET" and entry[1].endswith("/" + name)]


def test_a_pull_lands_once_and_resumes_when_cut(tmp_path, files):
    size = files["synth-small-Q8_0.gguf"].stat().st_size
    with loopback_hub(REPO, files, cut_first_download_at=size // 2) as (endpoint, log):
        first = pull(endpoint, tmp_path, f"{REPO}:Q8_0")
        assert first.returncode == 0, first.stderr
        landed = tmp_path / REPO / "synth-small-Q8_0.gguf"
        assert first.stdout.strip() == str(landed)
        assert landed.read_bytes() == files["synth-small-Q8_0.gguf"].read_bytes()
        # cut at half: the download went on from what it had written, not from the start
        ranges = [r for _, _, r in downloads(log, "synth-small-Q8_0.gguf")]
        assert ranges[0] is None and len(ranges) == 2, ranges
        assert 0 < int(ranges[1].removeprefix("bytes=").rstrip("-")) <= size // 2, ranges
        before = len(downloads(log, "synth-small-Q8_0.gguf"))
        again = pull(endpoint, tmp_path, REPO, "synth-small-Q8_0.gguf")
        assert again.returncode == 0 and again.stdout.strip() == str(landed), again.stderr
        assert len(downloads(log, "synth-small-Q8_0.gguf")) == before  # nothing fetched again


def test_a_missing_file_or_tag_is_one_line(tmp_path, files):
    with loopback_hub(REPO, files) as (endpoint, _):
        for args in ([REPO, "nothing.gguf"], [f"{REPO}:Q2_K"]):
            r = pull(endpoint, tmp_path, *args)
            assert r.returncode == 1 and r.stderr.startswith("llamba: error: ") and len(r.stderr.splitlines()) == 1, r.stderr


def test_a_tag_picks_the_file():
    files = ["a-Q4_0.gguf", "a-Q4_K_M.gguf", "a-q8_0.gguf", "mmproj-a-f16.gguf", "b-Q6_K-00002-of-00002.gguf",
             "b-Q6_K-00001-of-00002.gguf"]
    assert pick_file(files, None) == "a-Q4_K_M.gguf"  # several: llama-server's default tag
    assert pick_file(files, "q8_0") == "a-q8_0.gguf" and pick_file(files, "Q6_K") == "b-Q6_K-00001-of-00002.gguf"
    assert pick_file(["only.gguf", "mmproj.gguf"], None) == "only.gguf"
    with pytest.raises(HubError):
        pick_file(files, "Q3_K_S")


def test_serve_an_hf_model(tmp_path, files):
    with loopback_hub(REPO, files) as (endpoint, _):
        env = {"HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home")}
        flags = ["--model", f"hf://{REPO}/synth-small-Q4_0.gguf", "--models-dir", str(tmp_path)]
        with llamba_server(flags, env=env) as (base, _):
            (model,) = httpx.get(f"{base}/v1/models", timeout=10).json()["data"]
            assert model["id"] == "synth-small-Q4_0"
            r = httpx.post(f"{base}/v1/completions", timeout=120,
                           json={"model": "synth-small-Q4_0", "prompt": "Hello", "max_tokens": 3})
            assert r.status_code == 200, r.text
    assert (tmp_path / REPO / "synth-small-Q4_0.gguf").exists()
