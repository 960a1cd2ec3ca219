"""A thinking model's answer (Qwen 3's template; `<think>...</think>` before the answer) on the
fake runner, read by each SDK: chat completions' `reasoning_content` (whole and streamed, as
llama-server and vLLM send it), the Responses API's reasoning item and its reasoning_text events,
the Messages API's thinking block and thinking_delta events; and the thinking sent back in the
history reaches the template. (tests/app/test_family_tools.py does the same on a served model.)"""
import asyncio
import json

from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from llamba.engine.chat.template import ChatTemplate
from tests.support import DATA, MODEL
from tests.support.fake_runner import FakeRunner
from tests.support.inprocess import serving
from tests.support.sse import events

ANSWER = "<think>\nThe user asks for a capital.\n</think>\n\nParis."
ASK = [{"role": "user", "content": "Capital of France?"}]


def qwen3_runner(answer: str = ANSWER) -> FakeRunner:
    runner = FakeRunner(answer, n_ctx=4096)
    runner.loaded.template = ChatTemplate((DATA / "templates" / "Qwen-Qwen3-0.6B.jinja").read_text())
    return runner


def post(path: str, body: dict, runner: FakeRunner | None = None):
    runner = runner or qwen3_runner()

    async def go():
        async with serving(runner) as c:
            return await c.post(path, json={"model": MODEL, **body})
    return asyncio.run(go()), runner


def data_lines(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and '"ping"' not in line]


def test_chat_completions_return_the_thinking_as_reasoning_content():
    r, _ = post("/v1/chat/completions", {"messages": ASK})
    message = ChatCompletion.model_validate(r.json()).choices[0].message
    assert message.content == "Paris." and r.json()["choices"][0]["message"]["reasoning_content"] == \
        "The user asks for a capital."
    # the fake runner's tokens are bytes: "<think>\n...\n</think>" is the thinking's tokens
    thought_tokens = len(ANSWER.encode()) - len("\n\nParis.")
    assert r.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] == thought_tokens
    chunks = [ChatCompletionChunk.model_validate(c) for c in events(post("/v1/chat/completions",
                                                                         {"messages": ASK, "stream": True})[0].text)]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == "The user asks for a capital."
    assert "".join(d.content or "" for d in deltas) == "Paris."
    # enable_thinking off: the template closes an empty thinking block, and the answer is all content
    r, runner = post("/v1/chat/completions", {"messages": ASK, "chat_template_kwargs": {"enable_thinking": False}},
                     qwen3_runner("Paris."))
    assert runner.loaded.tokenizer.decode(runner.jobs[0].prompts[0]).endswith("<think>\n\n</think>\n\n")
    assert r.json()["choices"][0]["message"]["content"] == "Paris." and "reasoning_content" not in r.json()["choices"][0]["message"]


def test_responses_return_a_reasoning_item_before_the_message():
    r, _ = post("/v1/responses", {"input": "Capital of France?"})
    response = Response.model_validate(r.json())
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "The user asks for a capital."
    assert reasoning.id.startswith("rs_") and message.type == "message" and response.output_text == "Paris."
    assert response.usage.output_tokens_details.reasoning_tokens == len(ANSWER.encode()) - len("\n\nParis.")
    stream = [TypeAdapter(ResponseStreamEvent).validate_python(e)
              for e in data_lines(post("/v1/responses", {"input": "Capital of France?", "stream": True})[0].text)]
    deltas = "".join(e.delta for e in stream if e.type == "response.reasoning_text.delta")
    done = next(e for e in stream if e.type == "response.reasoning_text.done")
    assert deltas == done.text == "The user asks for a capital." and done.output_index == 0
    assert "".join(e.delta for e in stream if e.type == "response.output_text.delta") == "Paris."
    # given back with a tool call, the reasoning reaches the template (Qwen 3 shows it after the last question)
    body = {"input": [*ASK, {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "Look it up."}]},
                      {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c1", "output": "Paris"}]}
    _, runner = post("/v1/responses", body)
    assert "<think>\nLook it up.\n</think>" in runner.loaded.tokenizer.decode(runner.jobs[0].prompts[0])


def test_messages_return_a_thinking_block_and_take_it_back():
    r, _ = post("/v1/messages", {"messages": ASK, "max_tokens": 256})
    message = Message.model_validate(r.json())
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking == "The user asks for a capital." and text.text == "Paris."
    stream = [TypeAdapter(RawMessageStreamEvent).validate_python(e)
              for e in data_lines(post("/v1/messages", {"messages": ASK, "max_tokens": 256, "stream": True})[0].text)]
    starts = [e.content_block.type for e in stream if e.type == "content_block_start"]
    thought = "".join(e.delta.thinking for e in stream if e.type == "content_block_delta" and e.delta.type == "thinking_delta")
    assert starts == ["thinking", "text"] and thought == "The user asks for a capital."
    # the next turn sends the thinking (signed, and redacted) back with its tool use
    history = [*ASK, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Look it up.", "signature": "c2ln"},
        {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Paris"}]}]
    r, runner = post("/v1/messages", {"messages": history, "max_tokens": 64, "thinking": {"type": "enabled", "budget_tokens": 1024}})
    assert r.status_code == 200, r.text
    assert "<think>\nLook it up.\n</think>" in runner.loaded.tokenizer.decode(runner.jobs[0].prompts[0])
    assert post("/v1/messages/count_tokens", {"messages": history})[0].status_code == 200


def test_an_image_is_refused_as_content_the_model_cannot_take():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    r, _ = post("/v1/messages", {"max_tokens": 16, "messages": [{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]})
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert r.json()["error"]["message"] == "messages.0: image content blocks are not supported: the model takes text only"
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    r, _ = post("/v1/chat/completions", {"messages": [{"role": "user", "content": [part]}]})
    assert r.status_code == 400 and "image_url content parts are not supported" in r.json()["error"]["message"]
