"""The README's examples for each API, run as written against a real `llamba serve` on the
default model (the server of tests/app/conftest.py), its address and API key put in. What each
prints is checked against what the server answered, read off the wire; every request is seeded
on its way (the examples sample with the model's defaults), so a failure can be replayed."""
import json
import re

import httpx
import httpx2
import pytest

from tests.support import ROOT
from tests.support.server import API_KEY

SEED = 7


def python_block(heading: str) -> str:
    section = (ROOT / "README.md").read_text().split(heading + "\n")[1].split("\n### ")[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def seeded(request):
    """The request with `"seed": SEED` in its JSON body (a generation's; other bodies as they are)."""
    if request.method != "POST" or not request.url.path.endswith(("/completions", "/responses", "/messages")):
        return request
    body = json.loads(request.read())
    headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
    return type(request)(request.method, request.url, headers=headers, json={**body, "seed": SEED})


@pytest.fixture
def wire(monkeypatch) -> list[tuple[dict, str]]:
    """Every request the example's clients send (seeded) and the whole answer's text, in order: at
    the transports of httpx and of httpx2 (which the openai and anthropic SDKs use)."""
    exchanges = []
    for module in (httpx, httpx2):
        send, send_async = module.HTTPTransport.handle_request, module.AsyncHTTPTransport.handle_async_request

        def handle(self, request, send=send):
            request = seeded(request)
            response = send(self, request)
            response.read()
            exchanges.append((json.loads(request.content or b"{}"), response.text))
            return response

        async def handle_async(self, request, send_async=send_async):
            request = seeded(request)
            response = await send_async(self, request)
            await response.aread()
            exchanges.append((json.loads(request.content or b"{}"), response.text))
            return response
        monkeypatch.setattr(module.HTTPTransport, "handle_request", handle)
        monkeypatch.setattr(module.AsyncHTTPTransport, "handle_async_request", handle_async)
    return exchanges


def run(server: str, heading: str) -> str:
    code = python_block(heading).replace("http://localhost:8000", server).replace('api_key="unused"',
                                                                                f'api_key="{API_KEY}"')
    printed = []
    exec(code, {"print": lambda *args, end="\n", **_: printed.append(" ".join(map(str, args)) + end)})
    return "".join(printed)


def output_text(response: dict) -> str:
    return "".join(c["text"] for item in response["output"] if item["type"] == "message" for c in item["content"])


def test_the_responses_example(server, wire):
    printed = run(server, "### The Responses API")
    (first, first_answer), (second, second_answer) = wire
    first_answer, second_answer = json.loads(first_answer), json.loads(second_answer)
    assert second["previous_response_id"] == first_answer["id"]
    assert printed == output_text(second_answer) + "\n" and printed.strip()
    # the second prompt holds the first turn
    assert second_answer["usage"]["input_tokens"] > first_answer["usage"]["input_tokens"]


def test_the_agent_example(server, wire):
    printed = run(server, "### An agent")
    turns = [(request, json.loads(answer)) for request, answer in wire]
    calls = [item for _, answer in turns for item in answer["output"] if item["type"] == "function_call"]
    assert calls and all(c["name"] == "get_weather" and set(json.loads(c["arguments"])) == {"city"} for c in calls)
    # the tool's result went back to the model, and its last answer is what the agent printed
    results = [item for request, _ in turns[1:] for item in request["input"] if item.get("type") == "function_call_output"]
    assert results[0]["output"] == f"Sunny, 21 C in {json.loads(calls[0]['arguments'])['city']}"
    assert printed == output_text(turns[-1][1]) + "\n" and printed.strip()


def test_the_messages_example(server, wire):
    printed = run(server, "### Anthropic's Messages API")
    [(request, stream)] = wire
    assert request["stream"] is True and request["system"] == "Answer briefly."
    events = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: ")]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert printed == text and text.strip() and events[-1]["type"] == "message_stop"


def test_the_embeddings_example(server, wire):
    from tests.support import SMOLLM2, loaded
    printed = run(server, "### Embeddings")
    [(request, answer)] = wire
    vectors = json.loads(answer)["data"]
    assert len(vectors) == 2 and request["input"] and len(request["input"]) == 2
    assert printed == f"2 {loaded(SMOLLM2).model.config.dim}\n"
