"""LangChain's OpenAI client, a real one, against the app in this process:
`with_structured_output` returns the model's type, and `bind_tools` runs a tool round trip; each
result is checked against the server's own answer, recorded off the wire."""
import asyncio
import json

import langchain_core.messages as messages
import langchain_openai
from pydantic import BaseModel, Field

from tests.support.inprocess import MODEL, client


class Capital(BaseModel):
    """A country's capital city."""
    country: str = Field(max_length=40)
    capital: str = Field(max_length=40)


def chat_model(c):
    return langchain_openai.ChatOpenAI(model=MODEL, base_url="http://llamba/v1", api_key="unused", temperature=0,
                                       max_tokens=100, http_async_client=c, max_retries=0)


def record(c) -> list[dict]:
    """The chat completions the app answers through client `c`, as JSON."""
    answers = []

    async def keep(response):
        await response.aread()
        answers.append(response.json())
    c.event_hooks["response"].append(keep)
    return answers


def test_with_structured_output_returns_the_model():
    async def go():
        async with client() as (c, _):
            answers = record(c)
            result = await chat_model(c).with_structured_output(Capital, method="json_schema").ainvoke(
                "What is the capital of France?")
            return result, answers
    result, answers = asyncio.run(go())
    assert len(answers) == 1
    assert result == Capital.model_validate_json(answers[0]["choices"][0]["message"]["content"])


def test_bind_tools_round_trip():
    weather = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                              "required": ["city"], "additionalProperties": False}}}

    async def go():
        async with client() as (c, _):
            answers = record(c)
            llm = chat_model(c).bind_tools([weather], tool_choice="get_weather")
            question = messages.HumanMessage("What is the weather in Paris?")
            first = await llm.ainvoke([question])
            call = first.tool_calls[0]
            result = messages.ToolMessage(json.dumps({"celsius": 21}), tool_call_id=call["id"])
            final = await chat_model(c).bind_tools([weather]).ainvoke([question, first, result])
            return first, final, answers
    first, final, answers = asyncio.run(go())
    [call] = first.tool_calls
    assert call["name"] == "get_weather" and set(call["args"]) == {"city"} and call["args"]["city"]
    sent = answers[0]["choices"][0]["message"]["tool_calls"][0]
    assert call["id"] == sent["id"] and call["args"] == json.loads(sent["function"]["arguments"])
    # the second turn, after the result: what the server answered, words or calls, as LangChain reads it
    message = answers[1]["choices"][0]["message"]
    assert final.content == (message["content"] or "")
    assert [c["name"] for c in final.tool_calls] == [c["function"]["name"] for c in message.get("tool_calls") or []]
