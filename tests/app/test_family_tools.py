"""A Qwen-template model served for real: forced and automatic tool calls in Qwen's own format
(`<tool_call>`, engine/chat/formats/hermes.py) through chat completions, the Responses API and the
Messages API, each read by its own SDK; streamed arguments equal the whole; its thinking apart from
its answer, and given back in a later turn. (The model is tests/support/families.py's synthetic
Qwen 3, with Qwen's added tokens: random weights, so only the grammar makes it call or think, or
a logit_bias on the `<tool_call>` token makes it choose to call.)"""
import json

import anthropic
import openai
import pytest

from tests.support.families import family_model
from tests.support.server import llamba_server

NAME = "synth-qwen3-f32"
# (an enum: a random model writes a free string until max_tokens)
CITY = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Lyon", "Paris"]}}, "required": ["city"]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                            "parameters": CITY}}
ASK = [{"role": "user", "content": "What is the weather in Lyon?"}]
OPEN_CALL = {"151657": 100}  # Qwen's <tool_call> token: what a model that chooses to call writes first


@pytest.fixture(scope="module")
def base():
    with llamba_server(["--model", str(family_model(NAME)), "--ctx", "1024"], patience=180) as (url, _):
        yield url


def test_chat_forced_call_whole_and_streamed(base):
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
    whole = client.chat.completions.create(model=NAME, messages=ASK, tools=[WEATHER], tool_choice="required",
                                           max_tokens=64, temperature=0)
    call = whole.choices[0].message.tool_calls[0]
    assert whole.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Lyon", "Paris")
    stream = client.chat.completions.create(model=NAME, messages=ASK, tools=[WEATHER], tool_choice="required",
                                            max_tokens=64, temperature=0, stream=True)
    pieces = [d.function.arguments or "" for chunk in stream if chunk.choices
              for d in chunk.choices[0].delta.tool_calls or []]
    assert len(pieces) > 1 and "".join(pieces) == call.function.arguments


def test_responses_forced_call(base):
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
    tool = {"type": "function", **WEATHER["function"]}
    r = client.responses.create(model=NAME, input="What is the weather in Lyon?", tools=[tool], tool_choice="required",
                                max_output_tokens=64, temperature=0)
    calls = [item for item in r.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and json.loads(calls[0].arguments)["city"] in ("Lyon", "Paris")


def test_messages_forced_tool_use(base):
    client = anthropic.Anthropic(base_url=base, api_key="unused")
    tool = {"name": "get_weather", "description": "The weather in a city",
            "input_schema": CITY}
    m = client.messages.create(model=NAME, max_tokens=64, messages=ASK, tools=[tool], tool_choice={"type": "any"},
                               extra_body={"temperature": 0})  # (this SDK takes no sampling arguments)
    uses = [block for block in m.content if block.type == "tool_use"]
    assert m.stop_reason == "tool_use" and uses[0].name == "get_weather" and uses[0].input["city"] in ("Lyon", "Paris")


def test_automatic_calls_start_at_the_call_token_in_every_api(base):
    """tool_choice "auto": nothing is forced until the model writes <tool_call> (here made likely by
    a logit_bias: random weights would not choose it); from that token on, the lazy grammar makes it
    a call, which each SDK reads as a call. Unbiased, the same request answers in text."""
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
    ask = dict(model=NAME, messages=ASK, tools=[WEATHER], tool_choice="auto", parallel_tool_calls=False,
               max_tokens=64, temperature=0)
    plain = client.chat.completions.create(**ask)
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].finish_reason == "length"
    whole = client.chat.completions.create(**ask, logit_bias=OPEN_CALL)
    call = whole.choices[0].message.tool_calls[0]
    assert whole.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Lyon", "Paris") and not whole.choices[0].message.content
    pieces = [d.function.arguments or "" for chunk in client.chat.completions.create(**ask, logit_bias=OPEN_CALL,
                                                                                     stream=True)
              if chunk.choices for d in chunk.choices[0].delta.tool_calls or []]
    assert len(pieces) > 1 and "".join(pieces) == call.function.arguments

    r = client.responses.create(model=NAME, input="What is the weather in Lyon?", tool_choice="auto",
                                tools=[{"type": "function", **WEATHER["function"]}], max_output_tokens=64,
                                temperature=0, extra_body={"logit_bias": OPEN_CALL})
    assert [item.type for item in r.output] == ["function_call"] and r.output[0].name == "get_weather"
    assert json.loads(r.output[0].arguments)["city"] in ("Lyon", "Paris")

    m = anthropic.Anthropic(base_url=base, api_key="unused").messages.create(
        model=NAME, max_tokens=64, messages=ASK, tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        tools=[{"name": "get_weather", "description": "The weather in a city", "input_schema": CITY}],
        extra_body={"temperature": 0, "logit_bias": OPEN_CALL})
    assert m.stop_reason == "tool_use" and [b.type for b in m.content] == ["tool_use"]
    assert m.content[0].name == "get_weather" and m.content[0].input["city"] in ("Lyon", "Paris")


def test_thinking_comes_apart_from_the_answer_whole_and_streamed(base):
    """Qwen 3's <think> block (forced here by a grammar, llama-server's `grammar` extension: random
    weights think of nothing) as reasoning_content, the answer after it as content."""
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
    grammar = 'start: "<think>\\nLyon is in France.\\n</think>\\n\\nIt is sunny in Lyon."'
    whole = client.chat.completions.create(model=NAME, messages=ASK, max_tokens=64, temperature=0,
                                           extra_body={"grammar": grammar})
    message = whole.choices[0].message
    assert message.content == "It is sunny in Lyon." and message.model_extra["reasoning_content"] == "Lyon is in France."
    stream = client.chat.completions.create(model=NAME, messages=ASK, max_tokens=64, temperature=0, stream=True,
                                            extra_body={"grammar": grammar})
    deltas = [chunk.choices[0].delta for chunk in stream if chunk.choices]
    reasoning = [d.model_extra.get("reasoning_content") or "" for d in deltas]
    assert len([r for r in reasoning if r]) > 1 and "".join(reasoning) == "Lyon is in France."
    assert "".join(d.content or "" for d in deltas) == "It is sunny in Lyon."


def test_a_messages_turn_that_sends_its_thinking_back_answers(base):
    """Anthropic clients with thinking on send the thinking block (signed) back with the tool use
    it led to: the turn answers, and the thinking is in the prompt (count_tokens counts it)."""
    client = anthropic.Anthropic(base_url=base, api_key="unused")
    tool = {"name": "get_weather", "description": "The weather in a city", "input_schema": CITY}

    def history(thinking: list[dict]) -> list[dict]:
        return [*ASK, {"role": "assistant", "content": [
            *thinking, {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Lyon"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny, 21 °C"}]}]
    thought = [{"type": "thinking", "thinking": "I should look up the weather in Lyon.", "signature": "EqQBCkYIBxgCKkA="},
               {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT"}]
    m = client.messages.create(model=NAME, max_tokens=8, messages=history(thought), tools=[tool],
                               thinking={"type": "enabled", "budget_tokens": 1024})
    assert m.stop_reason in ("max_tokens", "end_turn", "tool_use") and m.usage.output_tokens > 0
    with_thinking = client.messages.count_tokens(model=NAME, messages=history(thought), tools=[tool]).input_tokens
    without = client.messages.count_tokens(model=NAME, messages=history([]), tools=[tool]).input_tokens
    assert with_thinking > without


@pytest.fixture(scope="module")
def mistral_base():
    """The synthetic SentencePiece Llama: Mistral Nemo's template, so Mistral's [TOOL_CALLS] format."""
    with llamba_server(["--model", str(family_model("synth-llama-spm-f32")), "--ctx", "1024"], patience=180) as (url, _):
        yield url


def test_mistral_forced_call_whole_and_streamed(mistral_base):
    client = openai.OpenAI(base_url=f"{mistral_base}/v1", api_key="unused")
    ask = dict(model="synth-llama-spm-f32", messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=64,
               temperature=0)
    whole = client.chat.completions.create(**ask)
    call = whole.choices[0].message.tool_calls[0]
    assert whole.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Lyon", "Paris")
    pieces = [d.function.arguments or "" for chunk in client.chat.completions.create(**ask, stream=True)
              if chunk.choices for d in chunk.choices[0].delta.tool_calls or []]
    assert len(pieces) > 1 and "".join(pieces) == call.function.arguments
    # the call and its result sent back (OpenAI's ids: the template demands 9 characters) answer
    again = client.chat.completions.create(model="synth-llama-spm-f32", max_tokens=4, temperature=0, tools=[WEATHER],
                                           messages=[*ASK, whole.choices[0].message.model_dump(exclude_none=True),
                                                     {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}])
    assert again.choices[0].finish_reason in ("length", "stop", "tool_calls")
