"""Continuous batching, prefix caching and /metrics, through a real server generating 8 requests
at a time: a request's tokens do not depend on what runs beside it, cancelled streams free their
places, a chat's second turn reuses the first's keys and values, and the counters add up."""
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.server import metrics, running_server, wait_until_idle
from tests.support import GPL_TEXT, MODEL, require_file

PROMPTS = [f"Question {i}: name three things that are {c}." for i, c in
           enumerate(["red", "blue", "green", "cold", "hot", "small", "loud", "soft"])]


@pytest.fixture(scope="module")
def server():
    with running_server("--parallel", "8", "--queue-size", "16", "--ctx", "2048") as base:
        yield base


def complete(base: str, prompt: str, **extra) -> dict:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 24, "logprobs": 1,
            "return_tokens_as_token_ids": True, **extra}
    r = httpx.post(f"{base}/v1/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def tokens_and_logprobs(answer: dict) -> tuple[list, list]:
    lp = answer["choices"][0]["logprobs"]
    return lp["tokens"], lp["token_logprobs"]


@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=0.8, seed=1234)], ids=["greedy", "seeded"])
def test_a_request_gets_the_same_tokens_alone_or_among_seven_others(server, sampling):
    alone = [tokens_and_logprobs(complete(server, p, **sampling)) for p in PROMPTS]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: tokens_and_logprobs(complete(server, p, **sampling)), PROMPTS))
    for (tokens_alone, lp_alone), (tokens, lp) in zip(alone, together):
        assert tokens == tokens_alone
        assert lp == lp_alone  # bit for bit: a token's maths does not depend on its batch


WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def mixed_request(base: str, i: int) -> str:
    """Request i of eight, greedy, through chat completions, the Responses API or the Messages
    API in turn, some with a forced tool call (a grammar): the answer's text, or its call."""
    question = PROMPTS[i]
    if i % 3 == 0:
        body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 24, "temperature": 0}
        if i == 3:
            body |= {"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}],
                     "tool_choice": "required"}
        message = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300).json()["choices"][0]["message"]
        return message["content"] or json.dumps(message["tool_calls"][0]["function"])
    if i % 3 == 1:
        body = {"model": MODEL, "input": question, "max_output_tokens": 24, "temperature": 0}
        if i == 4:
            body |= {"tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER}],
                     "tool_choice": "required"}
        output = httpx.post(f"{base}/v1/responses", json=body, timeout=300).json()["output"][0]
        return output["content"][0]["text"] if output["type"] == "message" else output["arguments"]
    body = {"model": MODEL, "max_tokens": 24, "temperature": 0, "messages": [{"role": "user", "content": question}]}
    if i == 5:
        body |= {"tools": [{"name": "get_weather", "input_schema": WEATHER}], "tool_choice": {"type": "any"}}
    block = httpx.post(f"{base}/v1/messages", json=body, timeout=300).json()["content"][0]
    return block.get("text") or json.dumps(block["input"])


def test_eight_requests_mixing_the_three_apis_get_the_same_answers_as_alone(server):
    alone = [mixed_request(server, i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda i: mixed_request(server, i), range(8)))
    assert together == alone and all(alone)


def test_cancelling_four_of_eight_streams_leaves_the_others_right_and_frees_their_slots(server):
    story = {"max_tokens": 120, "ignore_eos": True, "temperature": 0}
    expected = {p: complete(server, p, **story)["choices"][0]["text"] for p in PROMPTS[:4]}
    results, clients = {}, []

    def stream(prompt: str, cancel: bool):
        client = httpx.Client(timeout=300)
        clients.append(client)
        body = {"model": MODEL, "prompt": prompt, "stream": True, **story}
        with client.stream("POST", f"{server}/v1/completions", json=body) as r:
            text, n = "", 0
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    text += json.loads(line[6:])["choices"][0]["text"]
                    n += 1
                    if cancel and n == 10:
                        return  # hang up midway
            results[prompt] = text

    threads = [threading.Thread(target=stream, args=(p, i >= 4)) for i, p in enumerate(PROMPTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for c in clients:
        c.close()
    assert {p: results.get(p) for p in PROMPTS[:4]} == expected
    assert wait_until_idle(server)["llamba_requests_running"] == 0  # the hung-up streams left too
    with ThreadPoolExecutor(8) as pool:  # and all 8 places serve again
        answers = list(pool.map(lambda p: complete(server, p, temperature=0), PROMPTS))
    assert all(a["usage"]["completion_tokens"] >= 1 for a in answers)


def test_second_chat_turn_reuses_the_first_turns_cache(server):
    require_file(GPL_TEXT)  # a long text for the first turn
    chat = lambda messages: httpx.post(f"{server}/v1/chat/completions", timeout=300, json={  # noqa: E731
        "model": MODEL, "messages": messages, "max_tokens": 16, "temperature": 0}).json()
    first_messages = [{"role": "user", "content": "Summarise this licence text:\n" + GPL_TEXT.read_text()[:3000]}]
    first = chat(first_messages)
    # (at most the template's default system prompt, which other chats here have sent)
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] < 40
    second_messages = first_messages + [first["choices"][0]["message"],
                                        {"role": "user", "content": "Now in one sentence."}]
    second = chat(second_messages)
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    # everything up to the end of the first answer is reused; only the new turn is computed
    assert cached >= first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"] - 2
    assert cached < second["usage"]["prompt_tokens"]


def test_metrics_count_what_was_sent(server):
    before = metrics(server)
    answers = [complete(server, p) for p in PROMPTS[:3]]
    after = metrics(server)
    delta = lambda name: after.get(name, 0) - before.get(name, 0)  # noqa: E731
    assert delta("llamba_requests_total") == 3
    assert delta("llamba_prompt_tokens_total") == sum(a["usage"]["prompt_tokens"] for a in answers)
    assert delta("llamba_generated_tokens_total") == sum(a["usage"]["completion_tokens"] for a in answers)
    assert delta("llamba_time_to_first_token_seconds_count") == 3
    assert delta("llamba_time_per_output_token_seconds_count") == sum(
        a["usage"]["completion_tokens"] - 1 for a in answers)
    assert after["llamba_requests_running"] == 0 and after["llamba_requests_waiting"] == 0
