"""What the README promises of a server's settings, each checked through a real `llamba serve`:
`/health` 503 while the model loads; a configuration file, overridden by the environment,
overridden by flags; `kv_cache_type`, `cors_origins`, `request_timeout` and `pooling` as set; the
prefix cache's counters; a Lark grammar."""
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np
import pytest

from llamba.engine.kv_cache import KVCache
from tests.support import MODEL, ROOT, SMOLLM2, loaded, model_path, model_runner
from tests.support.server import free_port, metrics, running_server

ORIGIN = "http://chat.example"
CONFIG = f"""
context_length: 256
parallel: 2
kv_cache_type: f32
cors_origins: ["{ORIGIN}"]
"""
TEXT = "The cat sat on the mat."


@pytest.fixture(scope="module")
def started():
    """A server from CONFIG, LLAMBA_PARALLEL=3 and LLAMBA_KV_CACHE_TYPE=q8_0 in its environment and
    --parallel 4 on its command line; yields (base URL, its log, the /health answers seen while
    it started)."""
    model_path(SMOLLM2)
    with tempfile.TemporaryDirectory() as folder:
        config = os.path.join(folder, "llamba.yaml")
        with open(config, "w") as f:
            f.write(CONFIG)
        port, log = free_port(), open(os.path.join(folder, "log"), "w+")
        env = {**os.environ, "LLAMBA_PARALLEL": "3", "LLAMBA_KV_CACHE_TYPE": "q8_0", "LLAMBA_POOLING": "last"}
        proc = subprocess.Popen([sys.executable, "-m", "llamba", "serve", "--port", str(port), "--config", config,
                                 "--parallel", "4"], cwd=ROOT, stdout=log, stderr=log, env=env)
        base, seen = f"http://127.0.0.1:{port}", []
        try:
            for _ in range(6000):  # until ready (a hang guard: ten minutes), every answer kept
                assert proc.poll() is None, open(log.name).read()[-2000:]
                try:
                    r = httpx.get(f"{base}/health", timeout=5)
                    seen.append((r.status_code, r.json()))
                    if r.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
            yield base, log, seen
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def test_health_is_503_until_the_model_is_in(started):
    _, _, seen = started
    assert seen[-1] == (200, {"status": "ok"})
    assert (503, {"status": "loading"}) in seen and set(map(str, seen)) <= {str((503, {"status": "loading"})),
                                                                            str((200, {"status": "ok"}))}


def test_flags_override_the_environment_which_overrides_the_file(started):
    base, log, _ = started
    meta = httpx.get(f"{base}/v1/models/{MODEL}", timeout=10).json()["meta"]
    assert meta["parallel"] == 4 and meta["context_length"] == 256  # the flag's; the file's
    # the environment's q8_0 over the file's f32: the pool's size, as the log says it
    config = loaded(SMOLLM2).model.config
    log.seek(0)
    logged = float(re.search(r"KV caches, full: (\d+) MB", log.read()).group(1))
    assert logged == round(KVCache.size(config, 256, 4, "q8_0") / 2**20)
    assert logged < KVCache.size(config, 256, 4, "f32") / 2**20 / 2


def test_cors_origins_answer_a_browsers_preflight(started):
    base, _, _ = started
    asked = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    r = httpx.options(f"{base}/v1/chat/completions", headers=asked, timeout=10)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(f"{base}/v1/chat/completions", headers={**asked, "Origin": "http://elsewhere"}, timeout=10)
    assert "access-control-allow-origin" not in other.headers


def test_request_timeout_ends_a_generation_with_length():
    """0.05 s: no CPU generates the 200 tokens asked for within it."""
    with running_server("--ctx", "256", env={"LLAMBA_REQUEST_TIMEOUT": "0.05"}) as base:
        r = httpx.post(f"{base}/v1/completions", timeout=60, json={
            "model": MODEL, "prompt": "Once upon a time", "max_tokens": 200, "ignore_eos": True, "temperature": 0})
    choice, used = r.json()["choices"][0], r.json()["usage"]
    assert choice["finish_reason"] == "length" and 1 <= used["completion_tokens"] < 200


def test_the_prefix_cache_counters_count_what_usage_reports(started):
    base, _, _ = started
    chat = {"model": MODEL, "max_tokens": 1, "temperature": 0,
            "messages": [{"role": "system", "content": "You are a careful assistant. " * 8},
                         {"role": "user", "content": "Hi"}]}
    httpx.post(f"{base}/v1/chat/completions", json=chat, timeout=60)
    before = metrics(base)
    again = httpx.post(f"{base}/v1/chat/completions", json=chat, timeout=60).json()
    after = metrics(base)
    cached = again["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0
    assert after["llamba_prompt_tokens_cached_total"] - before["llamba_prompt_tokens_cached_total"] == cached
    assert after["llamba_prefix_cache_hits_total"] - before["llamba_prefix_cache_hits_total"] == 1
    assert after["llamba_requests_total"] - before["llamba_requests_total"] == 1


def test_a_lark_grammar_constrains_a_completion(started):
    base, _, _ = started
    for seed in range(3):
        r = httpx.post(f"{base}/v1/completions", timeout=60, json={
            "model": MODEL, "prompt": "Is the sky blue? Answer:", "max_tokens": 8, "seed": seed,
            "grammar": 'start: " " ("yes" | "no")'})
        assert r.status_code == 200 and r.json()["choices"][0]["text"] in (" yes", " no"), r.text


def test_the_pooling_setting_pools_the_embeddings(started):
    """LLAMBA_POOLING=last: the server's vector is the engine's own with `last` pooling (not `mean`)."""
    base, _, _ = started
    served = np.array(httpx.post(f"{base}/v1/embeddings", timeout=60,
                                 json={"model": MODEL, "input": TEXT}).json()["data"][0]["embedding"])
    lm = loaded(SMOLLM2)

    async def engine(pooling):
        runner = model_runner(lm, n_ctx=256, parallel=2, kv_type="q8_0")  # (the server's, from its environment)
        job = runner.submit_embeddings([lm.tokenizer.encode(TEXT, add_special=True)], pooling)
        [event] = [e async for e in runner.stream(job)]
        runner.close()
        return event.vector
    last, mean = asyncio.run(engine("last")), asyncio.run(engine("mean"))
    assert np.allclose(served, last, atol=1e-6) and not np.allclose(served, mean, atol=1e-2)
