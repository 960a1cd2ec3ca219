"""Structured output and tool calls, in this process (httpx's ASGI transport), through the real
openai SDK: `parse()` into pydantic models, llama-server's response_format cases, tools with each
tool_choice and a whole tool loop, on the default model and on the 1B-shaped one (Llama 3.2's
template), and batching unchanged by constraints."""
import asyncio
import enum
import json

import httpx
import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel, Field

from tests.support.inprocess import MODEL, client
from tests.support import SMOLLM2, model_path


def sdk(c: httpx.AsyncClient) -> AsyncOpenAI:
    return AsyncOpenAI(base_url="http://llamba/v1", api_key="unused", http_client=c, max_retries=0)


# --- parse() into pydantic models --------------------------------------------------------------
class Colour(str, enum.Enum):
    red = "red"
    green = "green"
    blue = "blue"


class City(BaseModel):
    name: str
    country: str
    population: int = Field(ge=0)


class Pet(BaseModel):
    name: str
    species: str
    colour: Colour
    age: int | None = None


class Recipe(BaseModel):
    title: str
    ingredients: list[str]
    minutes: int = Field(ge=1, le=600)


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    name: str
    address: Address
    tags: list[str]
    score: float = Field(ge=0, le=10)


class Answer(BaseModel):
    answer: str
    confident: bool
    sources: list[str] | None = None


# (A 135M model must be asked for JSON, as OpenAI's JSON mode asks of every prompt: told nothing,
# it writes prose into the strings the grammar opens; and told how long a list is, or it may list
# until the context is full.)
CASES = [(City, "Describe a large city in JSON."), (Pet, "Describe a pet in JSON."),
         (Recipe, "Give me a quick recipe in JSON."), (Person, "Invent a person with an address and two tags, in JSON."),
         (Answer, "Is the sky blue? Answer in JSON.")]


@pytest.mark.parametrize("model, question", CASES, ids=[c[0].__name__ for c in CASES])
def test_parse_into_pydantic_models(model, question):
    """20 requests at temperature 0.7 with no max_tokens (the SDK's usual call): every one parses
    and validates, no retries."""
    async def go():
        async with client(parallel=8, queue_size=32) as (c, _):
            openai = sdk(c)

            async def one(seed):
                r = await openai.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": question}],
                                                        response_format=model, temperature=0.7, seed=seed)
                return r.choices[0].message.parsed, r.choices[0].finish_reason
            return await asyncio.gather(*(one(seed) for seed in range(20)))
    results = asyncio.run(go())
    assert all(isinstance(parsed, model) and finish == "stop" for parsed, finish in results), results


# --- response_format as llama-server's tests ask --------------------------------------------------
def chat(body: dict, **client_kw):
    async def go():
        async with client(**client_kw) as (c, _):
            return await c.post("/v1/chat/completions", json={"model": MODEL, "messages": [
                {"role": "user", "content": "Describe a cat in JSON."}], "temperature": 0,
                "max_tokens": 300, **body})
    return asyncio.run(go())


def content(r: httpx.Response):
    assert r.status_code == 200, r.text
    return json.loads(r.json()["choices"][0]["message"]["content"])


def test_const_schema_gives_exactly_the_constant():
    assert content(chat({"response_format": {"type": "json_schema", "json_schema": {
        "name": "c", "schema": {"const": "foooooo"}}}})) == "foooooo"


def test_array_of_integers_schema():
    value = content(chat({"response_format": {"type": "json_schema", "json_schema": {
        "name": "a", "schema": {"type": "array", "items": {"type": "integer"}}}}}))
    assert isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def test_json_object_gives_an_object():
    assert isinstance(content(chat({"response_format": {"type": "json_object"}})), dict)


def test_llama_server_extensions_json_schema_and_grammar():
    assert isinstance(content(chat({"json_schema": {"type": "object", "properties": {"n": {"type": "integer"}},
                                                    "required": ["n"]}}))["n"], int)
    r = chat({"grammar": 'root ::= "yes" | "no"'})
    assert r.json()["choices"][0]["message"]["content"] in ("yes", "no")


@pytest.mark.parametrize("response_format", [
    {"type": "sound"},
    {"type": "json_schema", "json_schema": {"name": "n", "schema": 123}},
    {"type": "json_schema", "json_schema": {"name": "u", "schema": {"type": "object", "properties": {
        "a": {"type": "strnig"}}}}},
], ids=["unknown type", "non-object schema", "uncompilable schema"])
def test_bad_response_formats_are_400_with_param(response_format):
    r = chat({"response_format": response_format})
    assert r.status_code == 400
    assert r.json()["error"]["param"].startswith("response_format")


def test_max_tokens_cutting_the_json_says_length():
    r = chat({"response_format": {"type": "json_schema", "json_schema": {"name": "l", "schema": {
        "type": "array", "items": {"type": "string"}, "minItems": 50}}}, "max_tokens": 12})
    assert r.json()["choices"][0]["finish_reason"] == "length"


# --- tools -----------------------------------------------------------------------------------------
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                           "unit": {"enum": ["celsius", "fahrenheit"]}},
                          "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time in a time zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 40}},
                       "required": ["zone"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
MODELS = {"default": (SMOLLM2, MODEL), "llama3-template": ("synth-llama3-small-q4_0", "llama")}  # Llama 3.2 template


def valid_call(call, name=None) -> bool:
    args = json.loads(call.function.arguments)
    if call.function.name == "get_weather":
        ok = set(args) == {"city", "unit"} and isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit")
    else:
        ok = call.function.name == "get_time" and set(args) == {"zone"} and isinstance(args["zone"], str)
    return ok and (name is None or call.function.name == name) and call.type == "function" and call.id


@pytest.mark.parametrize("which", list(MODELS))
@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_time"}}],
                         ids=["required", "named"])
def test_forced_tool_calls_always_call_a_declared_tool(which, tool_choice):
    name_of_model, model_id = MODELS[which]
    model_path(name_of_model)
    named = tool_choice["function"]["name"] if isinstance(tool_choice, dict) else None

    async def go():
        async with client(parallel=8, queue_size=32, model=name_of_model, model_id=model_id, n_ctx=1024) as (c, _):
            openai = sdk(c)

            async def whole(seed):
                r = await openai.chat.completions.create(model=model_id, messages=ASK, tools=[WEATHER, TIME],
                                                         tool_choice=tool_choice, temperature=0.7, seed=seed,
                                                         max_tokens=200)
                return r.choices[0]

            async def streamed(seed):
                calls, finish = {}, None
                stream = await openai.chat.completions.create(
                    model=model_id, messages=ASK, tools=[WEATHER, TIME], tool_choice=tool_choice, temperature=0.7,
                    seed=seed, max_tokens=200, stream=True)
                async for chunk in stream:
                    for choice in chunk.choices:
                        finish = choice.finish_reason or finish
                        for d in choice.delta.tool_calls or []:
                            call = calls.setdefault(d.index, {"id": d.id, "type": d.type, "name": "", "arguments": ""})
                            call["name"] += d.function.name or ""
                            call["arguments"] += d.function.arguments or ""
                return calls, finish
            return (await asyncio.gather(*(whole(s) for s in range(20))),
                    await asyncio.gather(*(streamed(s) for s in range(10))),
                    await whole(0), (await streamed(0)))
    whole, streamed, whole0, streamed0 = asyncio.run(go())
    assert all(ch.finish_reason == "tool_calls" and ch.message.content is None and ch.message.tool_calls
               and all(valid_call(call, named) for call in ch.message.tool_calls) for ch in whole), whole
    for calls, finish in streamed:
        assert finish == "tool_calls" and calls and all(c["id"] and c["type"] == "function" for c in calls.values())
        assert sorted(calls) == list(range(len(calls)))  # indexes count up
    # the same seed streamed and whole: the deltas reassemble to the same calls
    assert [(c["name"], c["arguments"]) for c in streamed0[0].values()] == [
        (c.function.name, c.function.arguments) for c in whole0.message.tool_calls]


def test_tool_choice_none_gives_no_calls():
    async def go():
        async with client() as (c, _):
            r = await sdk(c).chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="none",
                                                     max_tokens=40)
            return r.choices[0]
    choice = asyncio.run(go())
    assert choice.message.tool_calls is None and choice.finish_reason in ("stop", "length")


@pytest.mark.parametrize("which", list(MODELS))
def test_a_whole_tool_loop(which):
    """call -> role "tool" result -> final answer, through the SDK, without errors."""
    name_of_model, model_id = MODELS[which]
    model_path(name_of_model)

    async def go():
        async with client(model=name_of_model, model_id=model_id, n_ctx=1024) as (c, _):
            openai = sdk(c)
            # (one call: the 1B-shaped model's random weights would go on calling until max_tokens)
            first = await openai.chat.completions.create(model=model_id, messages=ASK, tools=[WEATHER],
                                                         tool_choice="required", parallel_tool_calls=False,
                                                         temperature=0, max_tokens=100)
            call = first.choices[0].message.tool_calls[0]
            messages = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21})}]
            final = await openai.chat.completions.create(model=model_id, messages=messages, tools=[WEATHER],
                                                         temperature=0, max_tokens=40)
            return first, final
    first, final = asyncio.run(go())
    assert first.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].finish_reason in ("stop", "length", "tool_calls")


@pytest.mark.parametrize("tools, param", [
    ([{"type": "function", "function": {"name": "bad name!"}}], "tools"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "strnig"}}}], "tools"),
    ([{"type": "retrieval"}], "tools"),
])
def test_bad_tool_definitions_are_400(tools, param):
    r = chat({"tools": tools, "tool_choice": "required"})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith(param), r.text


def test_malformed_arguments_in_history_are_400():
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "21"}]
    r = chat({"messages": messages, "tools": [WEATHER]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


# --- batching unchanged -------------------------------------------------------------------------------
def test_constrained_and_free_requests_batch_without_changing_tokens():
    bodies = [{"messages": [{"role": "user", "content": f"Item {i}: describe a colour."}], "temperature": 0,
               "max_tokens": 24, "logprobs": True, **({"response_format": {"type": "json_object"}} if i % 2 else {})}
              for i in range(8)]

    def tokens(r):
        return [t["token"] for t in r.json()["choices"][0]["logprobs"]["content"]]

    async def go():
        async with client(parallel=8, queue_size=16) as (c, _):
            post = lambda b: c.post("/v1/chat/completions", json={"model": MODEL, **b})  # noqa: E731
            alone = [tokens(await post(b)) for b in bodies]
            together = [tokens(r) for r in await asyncio.gather(*(post(b) for b in bodies))]
            return alone, together
    alone, together = asyncio.run(go())
    assert alone == together
