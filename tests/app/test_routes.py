"""The routes in this process, through httpx's ASGI transport (no server, no subprocess): OpenAI's
wire format to the letter (n choices, the stream's finish chunks, no nulls OpenAI omits,
system_fingerprint), errors before any streaming, and the OpenAPI document."""
import asyncio

import pytest

from tests.support import MODEL, SMOLLM2, loaded
from tests.support.inprocess import client
from tests.support.sse import events

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


async def until(condition, tasks):
    """Wait for `condition` while every request task still runs (one that ended early would
    leave the condition false for ever)."""
    while not condition():
        ended = [t for t in tasks if t.done()]
        assert not ended, [t.result().text if not t.exception() else t.exception() for t in ended]
        await asyncio.sleep(0.01)


def test_n_choices_greedy_are_equal_and_seeded_ones_reproducible():
    async def go():
        async with client() as (c, _):
            greedy = (await c.post("/v1/chat/completions", json=dict(
                model=MODEL, messages=QUESTION, n=3, temperature=0, max_tokens=12))).json()
            seeded = [(await c.post("/v1/chat/completions", json=dict(
                model=MODEL, messages=QUESTION, n=3, temperature=0.8, seed=5, max_tokens=12))).json()
                for _ in range(2)]
            completion = (await c.post("/v1/completions", json=dict(
                model=MODEL, prompt="Once upon a time", n=3, temperature=0, max_tokens=6))).json()
        return greedy, seeded, completion
    greedy, seeded, completion = asyncio.run(go())
    assert [ch["index"] for ch in greedy["choices"]] == [0, 1, 2]
    assert len({ch["message"]["content"] for ch in greedy["choices"]}) == 1
    texts = [[ch["message"]["content"] for ch in r["choices"]] for r in seeded]
    assert texts[0] == texts[1]
    assert [ch["index"] for ch in completion["choices"]] == [0, 1, 2]
    assert len({ch["text"] for ch in completion["choices"]}) == 1
    assert greedy["usage"]["completion_tokens"] == sum(
        len(loaded(SMOLLM2).tokenizer.encode(ch["message"]["content"])) for ch in greedy["choices"]) + 3 * (
        greedy["choices"][0]["finish_reason"] == "stop")  # each choice's end-of-turn token counts too


def test_stream_ends_every_choice_with_an_empty_finish_chunk_and_sends_no_omitted_nulls():
    async def go():
        async with client() as (c, _):
            return await c.post("/v1/chat/completions", json=dict(
                model=MODEL, messages=QUESTION, n=3, temperature=0, max_tokens=12, stream=True))
    chunks = events(asyncio.run(go()).text)
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk" and isinstance(chunk["system_fingerprint"], str)
        assert "usage" not in chunk
        for choice in chunk["choices"]:
            assert None not in choice["delta"].values()
            assert set(choice) == {"index", "delta", "logprobs", "finish_reason"}
    for index in range(3):
        mine = [ch for chunk in chunks for ch in chunk["choices"] if ch["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert mine[-1]["delta"] == {} and mine[-1]["finish_reason"] in ("stop", "length")
        assert all(ch["finish_reason"] is None for ch in mine[:-1])
        assert all(ch["delta"]["content"] for ch in mine[1:-1])  # each token in its own chunk


def test_a_full_queue_answers_429_before_a_multi_prompt_stream_starts():
    async def go():
        async with client(parallel=2, queue_size=1) as (c, runner):
            long = dict(model=MODEL, prompt="Write a long story.", max_tokens=300, ignore_eos=True)
            tasks = []
            for running in (1, 2):  # one at a time: the queue holds one until the runner admits it
                tasks.append(asyncio.create_task(c.post("/v1/completions", json=long)))
                await until(lambda: len(runner.running) == running, tasks)
            tasks.append(asyncio.create_task(c.post("/v1/completions", json=long)))
            await until(lambda: runner._waiting, tasks)  # and a third waits: the queue is full
            refused = await c.post("/v1/completions", json=dict(
                model=MODEL, prompt=["First prompt.", "Second prompt."], max_tokens=4, stream=True))
            for task in tasks:
                task.cancel()
            return refused
    refused = asyncio.run(go())
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/json")
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_multi_prompt_completion_runs_as_one_batch():
    async def go():
        async with client() as (c, runner):
            r = await c.post("/v1/completions", json=dict(
                model=MODEL, prompt=["The sky is", "Grass is"], temperature=0, max_tokens=5))
            return r.json()
    body = asyncio.run(go())
    assert [ch["index"] for ch in body["choices"]] == [0, 1]
    assert body["choices"][0]["text"] != body["choices"][1]["text"]
    lm = loaded(SMOLLM2)
    prompts = [lm.tokenizer.encode(p, add_special=True, parse_special=True) for p in ("The sky is", "Grass is")]
    assert body["usage"]["prompt_tokens"] == sum(map(len, prompts))


@pytest.mark.parametrize("body, param", [
    (dict(prompt="x", suffix="y"), "suffix"),
    (dict(prompt="x", n=0), "n"),
    (dict(prompt="x", n=9), "n"),  # more choices than the runner generates at once
    (dict(prompt=[[1, 2, 10 ** 7]]), "prompt"),
    (dict(prompt="x", max_tokens=10 ** 6), "max_tokens"),
    (dict(prompt="x", logit_bias={"-3": 1}), "logit_bias"),
    (dict(prompt="x", temperature=3), "temperature"),
])
def test_bad_requests_get_400_with_the_param(body, param):
    async def go():
        async with client() as (c, _):
            return await c.post("/v1/completions", json=dict(model=MODEL, **body))
    r = asyncio.run(go())
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"


def test_openapi_describes_the_request_bodies():
    async def go():
        async with client() as (c, _):
            return (await c.get("/openapi.json")).json()
    doc = asyncio.run(go())
    chat = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert chat["$ref"].endswith("/ChatCompletionRequest")
    fields = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert {"messages", "n", "temperature", "stream", "top_k"} <= set(fields)
