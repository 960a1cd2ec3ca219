"""Many clients at once: every stream completes with the right text, a closed stream frees the
model within a token, and a full queue answers 429 at once."""
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import openai
import pytest

from tests.support.server import API_KEY, metrics, running_server, wait_until_idle
from tests.support import MODEL, SMOLLM2, loaded
from llamba.engine.generate import generate

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def engine_text(question: str, max_tokens: int) -> str:
    lm = loaded(SMOLLM2)
    ids = lm.chat_prompt_ids([{"role": "user", "content": question}])
    return "".join(e.text for e in generate(lm.model, lm.tokenizer, ids, replace(lm.sampling, temperature=0, max_tokens=max_tokens),
                                            lm.model.new_cache(512)))


def test_eight_concurrent_streams_all_complete_correctly():
    questions = [f"What is {i} plus {i}?" for i in range(1, 9)]
    with running_server("--api-key", API_KEY, "--queue-size", "8", "--ctx", "512") as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0)

        def stream(question):
            chunks = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}],
                                                    max_tokens=16, temperature=0, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        with ThreadPoolExecutor(8) as pool:
            texts = list(pool.map(stream, questions))
    assert texts == [engine_text(q, 16) for q in questions]


def open_stream(base: str, max_tokens: int = 400):
    """Starts a long streaming chat; returns it open (client, response, line iterator) after its
    first tokens. The iterator must stay referenced: collecting it closes the response."""
    client = httpx.Client(timeout=60)
    body = {"model": MODEL, "stream": True, "max_tokens": max_tokens, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Write a very long story."}]}
    request = client.build_request("POST", f"{base}/v1/chat/completions", json=body, headers=HEADERS)
    response = client.send(request, stream=True)
    lines = response.iter_lines()
    seen = 0
    for line in lines:
        if line.startswith("data: "):
            seen += 1
            if seen == 3:
                break
    return client, response, lines


def test_closing_a_stream_frees_the_model(server):
    before = metrics(server)["llamba_generated_tokens_total"]
    client, response, _ = open_stream(server)  # asks for 400 tokens
    response.close()
    client.close()
    after = wait_until_idle(server)
    assert after["llamba_requests_running"] == 0
    assert after["llamba_generated_tokens_total"] - before < 400, "the abandoned generation ran on"
    r = httpx.post(f"{server}/v1/chat/completions", headers=HEADERS, timeout=60,
                   json={"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200


def test_full_queue_answers_429(server):
    # the server's queue holds 2: one running + 2 waiting fills it
    streams = [open_stream(server)]
    waiting = []

    def wait_in_queue():
        try:
            httpx.post(f"{server}/v1/chat/completions", headers=HEADERS, timeout=120,
                       json={"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]})
        except httpx.HTTPError:
            pass

    for _ in range(2):
        t = threading.Thread(target=wait_in_queue, daemon=True)
        t.start()
        waiting.append(t)
    for _ in range(1200):  # until both wait (a minute at most: a hang guard, not a speed check)
        if metrics(server)["llamba_requests_waiting"] >= 2:
            break
        time.sleep(0.05)
    try:
        client = openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0)
        rejected = metrics(server)["llamba_requests_rejected_total"]
        with pytest.raises(openai.RateLimitError) as e:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
        assert e.value.response.headers["retry-after"] == "1"
        assert metrics(server)["llamba_requests_rejected_total"] == rejected + 1
        assert e.value.body["code"] == "rate_limit_exceeded"
    finally:
        for client_, response, _ in streams:
            response.close()
            client_.close()
        for t in waiting:
            t.join(timeout=60)


def test_abandoned_non_streaming_request_frees_the_model(server):
    """A client hangs up on a whole (not streamed) answer once its generation is under way."""
    before = metrics(server)["llamba_generated_tokens_total"]
    body = json.dumps({"model": MODEL, "max_tokens": 450, "ignore_eos": True,
                       "messages": [{"role": "user", "content": "Write a very long story."}]}).encode()
    host, port = server.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: llamba\r\nContent-Type: application/json\r\n"
                    b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        for _ in range(1200):  # until it generates (a minute at most: a hang guard, not a speed check)
            if metrics(server)["llamba_generated_tokens_total"] > before:
                break
            time.sleep(0.05)
    after = wait_until_idle(server)
    assert after["llamba_requests_running"] == 0
    assert 0 < after["llamba_generated_tokens_total"] - before < 450, "the abandoned generation ran on"
