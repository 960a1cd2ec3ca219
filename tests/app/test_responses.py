"""The Responses API against a real `llamba serve` on the default model, through the openai SDK's
own `client.responses` (the server of tests/app/conftest.py: an API key, one request at a time)."""
import json

import httpx
import openai
import pytest

from tests.support import MODEL
from tests.support.server import API_KEY

WEATHER = {"type": "function", "name": "get_weather", "description": "The current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_a_plain_response_and_its_stream_agree(client):
    whole = client.responses.create(model=MODEL, input="What is the capital of France?", instructions="Answer briefly.",
                                    max_output_tokens=40, temperature=0)
    assert whole.status in ("completed", "incomplete") and whole.output_text.strip()
    assert whole.usage.input_tokens > 0 and whole.usage.output_tokens > 0
    deltas, final = [], None
    for event in client.responses.create(model=MODEL, input="What is the capital of France?",
                                         instructions="Answer briefly.", max_output_tokens=40, temperature=0,
                                         stream=True):
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type in ("response.completed", "response.incomplete"):
            final = event.response
    assert "".join(deltas) == final.output_text == whole.output_text


def test_previous_response_id_carries_the_conversation(client):
    first = client.responses.create(model=MODEL, input="My name is Ada. Say hello.", max_output_tokens=24, temperature=0)
    second = client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=24, temperature=0)
    assert second.previous_response_id == first.id
    # the second prompt holds the first turn: its question and answer, then the new question
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert client.responses.retrieve(first.id).output_text == first.output_text
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve(first.id)
    assert e.value.body["code"] == "not_found"


def test_a_function_call_and_its_output_round_trip(client):
    call = client.responses.create(model=MODEL, input="What is the weather in Lyon?", tools=[WEATHER],
                                   tool_choice="required", max_output_tokens=64, temperature=0)
    (item,) = [i for i in call.output if i.type == "function_call"]
    assert item.name == "get_weather" and set(json.loads(item.arguments)) == {"city"}
    answer = client.responses.create(model=MODEL, tools=[WEATHER], max_output_tokens=64, temperature=0, input=[
        {"role": "user", "content": "What is the weather in Lyon?"},
        {"type": "function_call", "call_id": item.call_id, "name": item.name, "arguments": item.arguments},
        {"type": "function_call_output", "call_id": item.call_id, "output": "Sunny, 21 C"}])
    assert answer.status in ("completed", "incomplete") and len(answer.output) >= 1
    for out in answer.output:  # the model may call again, or answer in words
        if out.type == "function_call":
            assert out.name == "get_weather" and set(json.loads(out.arguments)) == {"city"}
        else:
            assert out.type == "message" and out.content[0].text
    # the call and its output are in the prompt
    assert answer.usage.input_tokens > call.usage.input_tokens + call.usage.output_tokens


def test_text_format_json_schema_is_enforced(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    r = client.responses.create(model=MODEL, input="Name a large city and its country, in JSON.", max_output_tokens=60,
                                temperature=0, text={"format": {"type": "json_schema", "name": "place",
                                                                "schema": schema, "strict": True}})
    assert r.status == "completed"
    assert set(json.loads(r.output_text)) == {"city", "country"}


def test_logit_bias_steers_every_chat_api_alike(server):
    """OpenAI's logit_bias on chat completions, the Responses API and (in its extra body) the
    Messages API: +100 on one token makes a greedy answer that token, over and over."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    [paris] = httpx.post(f"{server}/tokenize", json={"content": " Paris"}, headers=headers, timeout=30).json()["tokens"]
    ask, bias = [{"role": "user", "content": "Name a city."}], {str(paris): 100}
    chat = httpx.post(f"{server}/v1/chat/completions", headers=headers, timeout=60, json={
        "model": MODEL, "messages": ask, "max_tokens": 3, "temperature": 0, "logit_bias": bias}).json()
    response = httpx.post(f"{server}/v1/responses", headers=headers, timeout=60, json={
        "model": MODEL, "input": ask, "max_output_tokens": 3, "temperature": 0, "logit_bias": bias}).json()
    message = httpx.post(f"{server}/v1/messages", headers=headers, timeout=60, json={
        "model": MODEL, "messages": ask, "max_tokens": 3, "temperature": 0, "logit_bias": bias}).json()
    texts = [chat["choices"][0]["message"]["content"], response["output"][0]["content"][0]["text"],
             message["content"][0]["text"]]
    assert texts == [" Paris" * 3] * 3, texts
