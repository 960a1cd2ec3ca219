"""OpenAI's wire format, on a fake model runner (tests/support/fake_runner.py: no model, a token per
byte, a scripted answer): response and chunk shapes, usage, tool calls, and every error's status,
type and param — in milliseconds. The same behaviours on the real model are in test_routes.py,
test_openai_sdk.py and test_structured.py."""
import asyncio
import json

import pytest

from tests.support import MODEL
from tests.support.fake_runner import FakeRunner
from tests.support.inprocess import serving
from tests.support.sse import events

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = {"type": "function", "function": {"name": "get_weather",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CALL = json.dumps({"tool_call": {"name": "get_weather", "arguments": {"city": "Lyon"}}})


def post(path: str, body: dict, runner: FakeRunner | None = None, headers: dict | None = None, **settings):
    async def go():
        async with serving(runner or FakeRunner(), **settings) as c:
            return await c.post(path, json={"model": MODEL, **body}, headers=headers)
    return asyncio.run(go())


def test_a_chat_completion_has_openais_fields_and_counts_its_tokens():
    runner = FakeRunner("Paris.")
    r = post("/v1/chat/completions", {"messages": QUESTION}, runner)
    body = r.json()
    assert r.status_code == 200 and body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == MODEL and body["system_fingerprint"].startswith("llamba-")
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                                "logprobs": None, "finish_reason": "stop"}]
    prompt = len(runner.jobs[0].prompts[0])
    assert body["usage"] == {"prompt_tokens": prompt, "completion_tokens": 6, "total_tokens": prompt + 6,
                             "prompt_tokens_details": {"cached_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0,
                                                           "accepted_prediction_tokens": 0,
                                                           "rejected_prediction_tokens": 0}}
    assert runner.jobs[0].params.max_tokens == 256  # left out: the runner's default


def test_max_completion_tokens_cuts_with_length_and_logprobs_come_per_token():
    r = post("/v1/chat/completions", {"messages": QUESTION, "max_completion_tokens": 3, "logprobs": True,
                                      "top_logprobs": 2})
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == "Par" and choice["finish_reason"] == "length"
    content = choice["logprobs"]["content"]
    assert [c["token"] for c in content] == ["P", "a", "r"] and content[0]["bytes"] == [ord("P")]
    assert len(content[0]["top_logprobs"]) == 2


def test_a_stream_sends_the_role_each_token_the_finish_and_the_usage():
    r = post("/v1/chat/completions", {"messages": QUESTION, "stream": True, "n": 2,
                                      "stream_options": {"include_usage": True}})
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = events(r.text)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    for index in (0, 1):
        mine = [ch for c in chunks for ch in c["choices"] if ch["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(ch["delta"].get("content", "") for ch in mine) == "Paris."
        assert mine[-1]["delta"] == {} and mine[-1]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
    assert all("usage" not in c for c in chunks[:-1])


def test_a_tool_call_is_a_message_of_calls_and_streams_as_call_deltas():
    body = {"messages": QUESTION, "tools": [WEATHER], "tool_choice": "required"}
    message = post("/v1/chat/completions", body, FakeRunner(CALL)).json()["choices"][0]
    assert message["finish_reason"] == "tool_calls" and message["message"]["content"] is None
    (call,) = message["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Lyon"}'}
    chunks = events(post("/v1/chat/completions", {**body, "stream": True}, FakeRunner(CALL)).text)
    deltas = [ch["delta"] for c in chunks for ch in c["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""} and calls[0]["id"].startswith("call_")
    # the arguments arrive as the model writes them (the fake runner: a byte per token)
    pieces = [c["function"]["arguments"] for c in calls[1:]]
    assert all(c == {"index": 0, "function": {"arguments": p}} for c, p in zip(calls[1:], pieces))
    assert "".join(pieces) == '{"city": "Lyon"}' and len(pieces) > 5
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # streamed words of the envelope arrive as text
    words = json.dumps({"response": "Sunny \u00e0 Lyon."})
    chunks = events(post("/v1/chat/completions", {**body, "tool_choice": "auto", "stream": True}, FakeRunner(words)).text)
    assert "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"]) == "Sunny à Lyon."
    # words instead (tool_choice auto allows them): the envelope never reaches the user
    words = json.dumps({"response": "Sunny."})
    answer = post("/v1/chat/completions", {**body, "tool_choice": "auto"}, FakeRunner(words)).json()["choices"][0]
    assert answer["message"] == {"role": "assistant", "content": "Sunny."} and answer["finish_reason"] == "stop"


def test_parallel_tool_calls_are_each_a_call_with_its_own_index():
    """Two calls in one answer (the generic envelope's list, which parallel_tool_calls allows): two
    calls in the message, each streamed under its own index, in order."""
    time = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    calls = json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Lyon"}},
                                       {"name": "get_time", "arguments": {}}]})
    body = {"messages": QUESTION, "tools": [WEATHER, time], "tool_choice": "required", "parallel_tool_calls": True}
    message = post("/v1/chat/completions", body, FakeRunner(calls)).json()["choices"][0]
    assert [c["function"] for c in message["message"]["tool_calls"]] == [
        {"name": "get_weather", "arguments": '{"city": "Lyon"}'}, {"name": "get_time", "arguments": "{}"}]
    assert message["finish_reason"] == "tool_calls"
    chunks = events(post("/v1/chat/completions", {**body, "stream": True}, FakeRunner(calls)).text)
    deltas = [d for c in chunks for ch in c["choices"] for d in ch["delta"].get("tool_calls", [])]
    opened = [(d["index"], d["function"]["name"]) for d in deltas if "id" in d]
    assert opened == [(0, "get_weather"), (1, "get_time")]
    for index, arguments in ((0, '{"city": "Lyon"}'), (1, "{}")):
        assert "".join(d["function"]["arguments"] for d in deltas if d["index"] == index) == arguments


def test_a_completion_echoes_and_offsets_its_logprobs():
    r = post("/v1/completions", {"prompt": "Q: ", "echo": True, "logprobs": 1, "max_tokens": 2})
    choice = r.json()["choices"][0]
    assert r.json()["object"] == "text_completion" and choice["text"] == "Q: Pa" and choice["finish_reason"] == "length"
    assert choice["logprobs"]["tokens"] == ["P", "a"] and choice["logprobs"]["text_offset"] == [3, 4]
    chunks = events(post("/v1/completions", {"prompt": "Q: ", "stream": True, "max_tokens": 2,
                                             "stream_options": {"include_usage": True}}).text)
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == "Pa"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize("path, body, status, param, code", [
    ("/v1/chat/completions", {"messages": QUESTION, "max_tokens": 1000}, 400, "max_tokens", "context_length_exceeded"),
    ("/v1/chat/completions", {"messages": QUESTION, "max_completion_tokens": 1000}, 400, "max_completion_tokens",
     "context_length_exceeded"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 1000}, 400, "max_tokens", "context_length_exceeded"),
    ("/v1/chat/completions", {"messages": QUESTION, "n": 5}, 400, "n", None),
    ("/v1/chat/completions", {"messages": QUESTION, "temperature": 3}, 400, "temperature", None),
    ("/v1/chat/completions", {"messages": []}, 400, "messages", None),
    ("/v1/chat/completions", {"messages": QUESTION, "tool_choice": "required"}, 400, "tool_choice", None),
    ("/v1/chat/completions", {"messages": QUESTION, "response_format": {"type": "json_schema"}}, 400,
     "response_format", None),
    ("/v1/chat/completions", {"messages": QUESTION, "json_schema": 5}, 400, "json_schema", None),
    ("/v1/completions", {"prompt": "x", "suffix": "y"}, 400, "suffix", None),
    ("/v1/completions", {"prompt": [], "response_format": {"x": 1}}, 400, "prompt", None),  # (not a field here)
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": None}]}, 400, "messages.0", None),
    ("/v1/chat/completions", {"messages": QUESTION, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
    ("/v1/chat/completions", {"model": "nope", "messages": QUESTION}, 404, "model", "model_not_found"),
])
def test_errors_have_openais_shape_status_and_param(path, body, status, param, code):
    r = post(path, body)
    assert r.status_code == status, r.text
    assert r.json() == {"error": {"message": r.json()["error"]["message"], "type": "invalid_request_error",
                                  "param": param, "code": code}}


def test_a_full_queue_is_429_with_retry_after_and_a_wrong_key_401():
    runner = FakeRunner()
    runner.queue_full = True
    r = post("/v1/chat/completions", {"messages": QUESTION, "stream": True}, runner)
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["error"]["type"] == "rate_limit_exceeded"
    r = post("/v1/chat/completions", {"messages": QUESTION}, api_keys=["sk-1"], headers={"Authorization": "Bearer x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert post("/v1/chat/completions", {"messages": QUESTION}, api_keys=["sk-1"],
                headers={"Authorization": "Bearer sk-1"}).status_code == 200
