"""Limits the operator sets and the server keeps, and a clean shutdown: SIGTERM drains running
streams and refuses new requests; the request body cap, the max_tokens cap, the KV-cache budget
(refused at start-up with the numbers, kept while every slot is full), and hostile bodies that
must all answer 4xx in OpenAI's shape."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

from gguf import GGMLQuantizationType
import httpx
import pytest

from tests.support.server import API_KEY, free_port, running_server, server_process, wait_until_idle
from tests.support import MODEL, ROOT, SMOLLM2, loaded, model_path

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    return error


# --- SIGTERM ------------------------------------------------------------------------------------
def test_sigterm_lets_running_streams_end_refuses_new_requests_and_exits_0():
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a long story."}], "stream": True,
            "max_tokens": 400, "ignore_eos": True, "temperature": 0}
    results, started = [None] * 8, threading.Barrier(9)

    def stream(i, base):
        lines = []
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=120) as r:
            for line in r.iter_lines():
                lines.append(line)
                if sum(x.startswith("data: ") for x in lines) == 2 and line.startswith("data: "):
                    started.wait()  # (the role chunk, then a token: decoding has begun)
        results[i] = [line[6:] for line in lines if line.startswith("data: ")]

    with server_process("--parallel", "8", env={"LLAMBA_SHUTDOWN_GRACE": "3"}) as (base, proc):
        threads = [threading.Thread(target=stream, args=(i, base)) for i in range(8)]
        for t in threads:
            t.start()
        started.wait(timeout=300)  # every stream has its first token
        proc.send_signal(signal.SIGTERM)
        for _ in range(600):  # until the server drains (a hang guard, not a speed check)
            if httpx.get(f"{base}/health", timeout=30).status_code == 503:
                break
            time.sleep(0.05)
        refused = httpx.post(f"{base}/v1/chat/completions", json={**body, "stream": False}, timeout=30)
        health = httpx.get(f"{base}/health", timeout=30)
        for t in threads:
            t.join(timeout=60)
        code = proc.wait(timeout=30)
    assert openai_error(refused, 503)["type"] == "server_error" and refused.headers["retry-after"]
    assert health.status_code == 503 and health.json() == {"status": "draining"}
    for events in results:
        assert events[-1] == "[DONE]"
        finishes = [c["finish_reason"] for e in events[:-1] for c in json.loads(e)["choices"] if c["finish_reason"]]
        assert finishes in (["length"], ["stop"])
    assert code == 0


# --- limits -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def limited():
    """A server with small limits: 64 KB bodies, at most 32 tokens, /metrics behind the key."""
    with running_server("--api-key", API_KEY, "--ctx", "512", env={
            "LLAMBA_MAX_BODY_BYTES": "65536", "LLAMBA_MAX_TOKENS_LIMIT": "32", "LLAMBA_METRICS_NEED_KEY": "true"}) as base:
        yield base


def chat(base: str, **fields) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, **fields}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=HEADERS, timeout=60)


def test_a_body_over_the_cap_is_413_whether_its_length_is_announced_or_not(limited):
    big = json.dumps({"model": MODEL, "prompt": "x" * 100_000}).encode()
    error = openai_error(httpx.post(f"{limited}/v1/completions", content=big, headers=HEADERS, timeout=60), 413)
    assert "65536" in error["message"]
    chunked = httpx.post(f"{limited}/v1/completions", content=iter([big[:50_000], big[50_000:]]),
                         headers={**HEADERS, "Content-Type": "application/json"}, timeout=60)
    openai_error(chunked, 413)
    assert chat(limited).status_code == 200  # and the server goes on serving


def test_max_tokens_over_the_cap_is_400_and_the_default_is_capped(limited):
    assert openai_error(chat(limited, max_tokens=33), 400)["param"] == "max_tokens"
    r = httpx.post(f"{limited}/v1/chat/completions", headers=HEADERS, timeout=60, json={
        "model": MODEL, "messages": [{"role": "user", "content": "Count to 100."}], "ignore_eos": True})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 32


def test_metrics_may_need_the_key(limited):
    assert openai_error(httpx.get(f"{limited}/metrics", timeout=30), 401)["code"] == "invalid_api_key"
    assert httpx.get(f"{limited}/metrics", headers=HEADERS, timeout=30).status_code == 200


def test_hostile_bodies_answer_4xx_in_openais_shape(limited):
    nested = '{"model": "m", "messages": ' + "[" * 100_000 + "]" * 100_000 + "}"
    vocab = loaded(SMOLLM2).tokenizer.vocab_size
    bodies = {
        "10 MB prompt": json.dumps({"model": MODEL, "prompt": "x" * 10_000_000}),
        "deeply nested JSON": nested,
        "invalid UTF-8": b'{"model": "' + MODEL.encode() + b'", "prompt": "\xff\xfe"}',
        "max_tokens 2^31": json.dumps({"model": MODEL, "prompt": "Hi", "max_tokens": 2**31}),
        "logit_bias with 100k keys": json.dumps({"model": MODEL, "prompt": "Hi",
                                                 "logit_bias": {str(i): 1 for i in range(100_000)}}),
        "n out of range": json.dumps({"model": MODEL, "prompt": "Hi", "n": 1000}),
        "top_logprobs out of range": json.dumps({"model": MODEL, "logprobs": True, "top_logprobs": 50,
                                                 "messages": [{"role": "user", "content": "Hi"}]}),
        "tokens outside the vocabulary": json.dumps({"model": MODEL, "prompt": [1, vocab + 5]}),
        "empty messages": json.dumps({"model": MODEL, "messages": []}),
        "unknown role": json.dumps({"model": MODEL, "messages": [{"role": "wizard", "content": "Hi"}]}),
        "NaN temperature": '{"model": "%s", "prompt": "Hi", "temperature": NaN}' % MODEL,
        "negative seed": None,  # not an error: any 64-bit seed is a seed
    }
    for name, body in bodies.items():
        if body is None:
            continue
        path = "/v1/chat/completions" if "messages" in (body if isinstance(body, str) else "") else "/v1/completions"
        r = httpx.post(f"{limited}{path}", content=body, headers={**HEADERS, "Content-Type": "application/json"},
                       timeout=60)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:200])
        openai_error(r, r.status_code)
    assert httpx.post(f"{limited}/v1/completions", headers=HEADERS, timeout=60, json={
        "model": MODEL, "prompt": "Hi", "max_tokens": 2, "seed": -5}).status_code == 200
    assert chat(limited).status_code == 200


# --- the KV-cache budget ------------------------------------------------------------------------
def test_a_kv_budget_over_the_limit_refuses_to_start_with_both_numbers():
    model_path(SMOLLM2)
    run = subprocess.run([sys.executable, "-m", "llamba", "serve", "--ctx", "2048", "--parallel", "8"], cwd=ROOT,
                         env={**os.environ, "LLAMBA_KV_CACHE_LIMIT_MB": "100"}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    # SmolLM2: 30 layers x 3 KV heads x 64 x 2 (keys, values) x 2 bytes (float16) = 23,040 bytes a position
    needed = 30 * 3 * 64 * 2 * 2 * 2048 * 8 / 2**20  # parallel 8, context 2048
    assert f"{needed:,.0f} MB" in run.stderr and "100 MB" in run.stderr, run.stderr


def with_tensor_type(source, dest, name: str, ttype: int) -> None:
    """`source` copied with tensor `name` declared as type `ttype` in the header (its data, in place,
    is larger than that type needs: every offset stays valid)."""
    data = bytearray(source.read_bytes())
    at = data.index(len(name).to_bytes(8, "little") + name.encode()) + 8 + len(name)
    n_dims = int.from_bytes(data[at:at + 4], "little")
    at += 4 + 8 * n_dims
    data[at:at + 4] = ttype.to_bytes(4, "little")
    dest.write_bytes(bytes(data))


@pytest.mark.parametrize("broken", ["IQ4_NL tensor", "truncated"])
def test_a_model_that_cannot_be_loaded_stops_the_server_with_status_2_and_the_reason(broken, tmp_path):
    """Found while loading, after the server started: it must not answer "loading" for ever."""
    source, path = model_path("synth-llama3-tiny-f32"), tmp_path / "broken.gguf"
    if broken == "truncated":
        path.write_bytes(source.read_bytes()[:-64])
        reason = "runs past the end"
    else:
        with_tensor_type(source, path, "blk.1.ffn_down.weight", GGMLQuantizationType.IQ4_NL)
        reason = "'blk.1.ffn_down.weight' has unsupported type IQ4_NL"
    run = subprocess.run([sys.executable, "-m", "llamba", "serve", "--model", str(path), "--port", str(free_port())],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 2 and last.startswith("llamba: error: ") and reason in last, run.stderr[-2000:]
    assert "Traceback" not in run.stderr


def resident_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_every_slot_full_stays_within_the_kv_budget():
    """The pool holds `parallel` whole contexts; the cache slots (4 by default) keep finished
    prompts only in what the running ones leave free: two rounds of `parallel` requests, each
    filling its context, the second after the first's prompts are kept, stay within the budget."""
    n_ctx, parallel = 512, 4
    budget_mb = 30 * 3 * 64 * 2 * 2 * n_ctx * parallel / 2**20  # float16
    with server_process("--ctx", str(n_ctx), "--parallel", str(parallel), env={
            "LLAMBA_KV_CACHE_LIMIT_MB": str(budget_mb + 1)}) as (base, proc):
        body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
        assert httpx.post(f"{base}/v1/completions", json=body, timeout=120).status_code == 200  # warm
        # and every API's code run once (its first use allocates what it keeps)
        for path, request in (("/v1/responses", {"input": "Hi", "max_output_tokens": 2}),
                              ("/v1/messages", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})):
            r = httpx.post(f"{base}{path}", json={"model": MODEL, **request}, timeout=120)
            assert r.status_code == 200, r.text
        before = resident_mb(proc.pid)
        peak, done = before, []

        def one(i):  # a prompt of token ids that shares nothing with the others, to the last position
            ids = [(i * 7919 + j * 104729) % 40000 + 100 for j in range(n_ctx - 9)]
            full = {**body, "prompt": ids, "ignore_eos": True}
            done.append(httpx.post(f"{base}/v1/completions", json=full, timeout=600).json())
        for round in range(2):
            threads = [threading.Thread(target=one, args=(round * parallel + i,)) for i in range(parallel)]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                peak = max(peak, resident_mb(proc.pid))
                time.sleep(0.1)
        assert wait_until_idle(base)["llamba_requests_running"] == 0
    assert [d["usage"]["prompt_tokens"] + d["usage"]["completion_tokens"] for d in done] == [n_ctx - 1] * 2 * parallel
    # the caches grew by at most the budget (plus 32 MB of activations and allocator slack)
    assert peak - before <= budget_mb + 32, (before, peak, budget_mb)
