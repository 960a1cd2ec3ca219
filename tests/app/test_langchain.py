"""LangChain's OpenAI client, a real one, against the app in this process:
`with_structured_output` returns the model's type, and `bind_tools` runs a tool round trip."""
import asyncio
import json

import pytest
from pydantic import BaseModel, Field

from tests.support.inprocess import MODEL, client

langchain_openai = pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")
messages = pytest.importorskip("langchain_core.messages")


class Capital(BaseModel):
    """A country's capital city."""
    country: str = Field(max_length=40)
    capital: str = Field(max_length=40)


def chat_model(c):
    return langchain_openai.ChatOpenAI(model=MODEL, base_url="http://llamba/v1", api_key="unused", temperature=0,
                                       max_tokens=100, http_async_client=c, max_retries=0)


def test_with_structured_output_returns_the_model():
    async def go():
        async with client() as (c, _):
            return await chat_model(c).with_structured_output(Capital, method="json_schema").ainvoke(
                "What is the capital of France?")
    assert isinstance(asyncio.run(go()), Capital)


def test_bind_tools_round_trip():
    weather = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                              "required": ["city"], "additionalProperties": False}}}

    async def go():
        async with client() as (c, _):
            llm = chat_model(c).bind_tools([weather], tool_choice="get_weather")
            question = messages.HumanMessage("What is the weather in Paris?")
            first = await llm.ainvoke([question])
            call = first.tool_calls[0]
            result = messages.ToolMessage(json.dumps({"celsius": 21}), tool_call_id=call["id"])
            final = await chat_model(c).bind_tools([weather]).ainvoke([question, first, result])
            return first, final
    first, final = asyncio.run(go())
    assert first.tool_calls[0]["name"] == "get_weather" and isinstance(first.tool_calls[0]["args"]["city"], str)
    assert isinstance(final, messages.AIMessage)
