"""Anthropic's Messages API on the fake model runner: answers and stream events parse as the
anthropic package's own types, blocks and tools become the chat the template gets, stop reasons
and token counts agree, and errors have Anthropic's shape and statuses."""
import asyncio
import json

import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from tests.support import MODEL
from tests.support.fake_runner import FakeRunner
from tests.support.inprocess import serving
from tests.support.sse import events

ASK = [{"role": "user", "content": "Capital of France?"}]
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
CALL = json.dumps({"tool_call": {"name": "get_weather", "arguments": {"city": "Lyon"}}})
STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)


def post(*requests: tuple[str, dict], runner: FakeRunner | None = None, headers: dict | None = None, **settings):
    runner = runner or FakeRunner(n_ctx=4096)

    async def go():
        async with serving(runner, **settings) as c:
            return [await c.post(path, json={"model": MODEL, **body}, headers=headers) for path, body in requests]
    return asyncio.run(go()), runner


def test_a_message_is_anthropics_message_and_count_tokens_counts_its_prompt():
    body = {"system": "Be brief.", "messages": ASK}
    (r, count), runner = post(("/v1/messages", {**body, "max_tokens": 64}), ("/v1/messages/count_tokens", body))
    message = Message.model_validate(r.json())
    assert message.id.startswith("msg_") and message.role == "assistant" and message.stop_reason == "end_turn"
    assert [b.text for b in message.content] == ["Paris."] and message.usage.output_tokens == 6
    assert count.json() == {"input_tokens": message.usage.input_tokens} == {"input_tokens": len(runner.jobs[0].prompts[0])}
    text = runner.loaded.tokenizer.decode(runner.jobs[0].prompts[0])
    assert text.index("Be brief.") < text.index("Capital of France?")


def test_stop_reasons_say_why_it_ended():
    (cut,), _ = post(("/v1/messages", {"messages": ASK, "max_tokens": 2}))
    assert cut.json()["stop_reason"] == "max_tokens" and cut.json()["content"][0]["text"] == "Pa"
    (tool,), _ = post(("/v1/messages", {"messages": ASK, "max_tokens": 256, "tools": [WEATHER],
                                        "tool_choice": {"type": "any"}}), runner=FakeRunner(CALL, n_ctx=4096))
    message = Message.model_validate(tool.json())
    (block,) = message.content
    assert message.stop_reason == "tool_use" and block.type == "tool_use" and block.input == {"city": "Lyon"}
    assert block.id.startswith("toolu_")


def test_the_stream_is_anthropics_event_sequence_and_its_text_the_whole_answer():
    (r,), _ = post(("/v1/messages", {"messages": ASK, "max_tokens": 64, "stream": True}))
    parsed = [STREAM_EVENT.validate_python(json.loads(line[6:])) for line in r.text.splitlines()
              if line.startswith("data: ") and '"ping"' not in line]
    kinds = [e.type for e in parsed]
    assert kinds[:2] == ["message_start", "content_block_start"] and kinds[-3:] == ["content_block_stop",
                                                                                     "message_delta", "message_stop"]
    assert "".join(e.delta.text for e in parsed if e.type == "content_block_delta") == "Paris."
    assert next(e for e in parsed if e.type == "content_block_start").content_block.text == ""
    assert parsed[-2].delta.stop_reason == "end_turn" and parsed[-2].usage.output_tokens == 6
    assert "event: ping" in r.text
    (calls,), _ = post(("/v1/messages", {"messages": ASK, "max_tokens": 256, "stream": True, "tools": [WEATHER],
                                         "tool_choice": {"type": "tool", "name": "get_weather"}}),
                       runner=FakeRunner(CALL, n_ctx=4096))
    parsed = [STREAM_EVENT.validate_python(e) for e in events(calls.text + "\ndata: [DONE]\n") if e["type"] != "ping"]
    deltas = [e.delta for e in parsed if e.type == "content_block_delta"]
    # the input's JSON arrives as it is written (the fake runner: a byte per token)
    assert {d.type for d in deltas} == {"input_json_delta"} and len(deltas) > 5
    (start,) = [e for e in parsed if e.type == "content_block_start"]
    assert start.content_block.type == "tool_use" and start.content_block.input == {}
    assert json.loads("".join(d.partial_json for d in deltas)) == {"city": "Lyon"}


def test_tool_results_come_back_as_tool_messages():
    messages = [*ASK, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                          "input": {"city": "Lyon"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21 C"},
                                             {"type": "text", "text": "Thanks!"}]}]
    (r,), runner = post(("/v1/messages", {"messages": messages, "max_tokens": 64, "tools": [WEATHER]}),
                        runner=FakeRunner("It is sunny.", n_ctx=4096))
    assert r.status_code == 200, r.text
    text = runner.loaded.tokenizer.decode(runner.jobs[0].prompts[0])
    assert text.index('"city": "Lyon"') < text.index("sunny, 21 C") < text.index("Thanks!")


@pytest.mark.parametrize("body, headers, status, kind", [
    ({"messages": ASK}, None, 400, "invalid_request_error"),  # max_tokens is required
    ({"messages": ASK, "max_tokens": 10 ** 6}, None, 400, "invalid_request_error"),
    ({"messages": ASK, "max_tokens": 8, "temperature": 1.5}, None, 400, "invalid_request_error"),
    ({"model": "claude-nope", "messages": ASK, "max_tokens": 8}, None, 404, "not_found_error"),
    ({"messages": ASK, "max_tokens": 8}, {"x-api-key": "wrong"}, 401, "authentication_error"),
])
def test_errors_have_anthropics_shape(body, headers, status, kind):
    (r,), _ = post(("/v1/messages", body), headers=headers, api_keys=["sk-1"] if headers else [])
    assert r.status_code == status, r.text
    assert r.json() == {"type": "error", "error": {"type": kind, "message": r.json()["error"]["message"]}}


def test_the_key_is_taken_from_x_api_key_and_a_full_queue_is_rate_limited():
    (r,), _ = post(("/v1/messages", {"messages": ASK, "max_tokens": 8}), headers={"x-api-key": "sk-1"},
                   api_keys=["sk-1"])
    assert r.status_code == 200
    runner = FakeRunner(n_ctx=4096)
    runner.queue_full = True
    (r,), _ = post(("/v1/messages", {"messages": ASK, "max_tokens": 8}), runner=runner)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error" and r.headers["retry-after"]
