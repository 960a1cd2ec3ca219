"""OpenAI's Responses API on the fake model runner: every answer and stream event parses as the
openai package's own types, the input items and stored responses become the chat the template
gets, and errors have OpenAI's shape."""
import asyncio
import json

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.support import MODEL
from tests.support.fake_runner import FakeRunner
from tests.support.inprocess import serving
from tests.support.sse import events

WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
CALL = json.dumps({"tool_call": {"name": "get_weather", "arguments": {"city": "Lyon"}}})
STREAM_EVENT = TypeAdapter(ResponseStreamEvent)


def exchange(*bodies: dict, runner: FakeRunner | None = None, **settings) -> tuple[list, FakeRunner]:
    """POST each body in turn (a `previous_response_id` of "PREVIOUS" names the answer before)."""
    runner = runner or FakeRunner()

    async def go():
        answers = []
        async with serving(runner, **settings) as c:
            for body in bodies:
                if body.get("previous_response_id") == "PREVIOUS":
                    body = {**body, "previous_response_id": answers[-1].json()["id"]}
                answers.append(await c.post("/v1/responses", json={"model": MODEL, **body}))
        return answers
    return asyncio.run(go()), runner


def prompt(runner: FakeRunner, i: int = -1) -> str:
    return runner.loaded.tokenizer.decode(runner.jobs[i].prompts[0])


def test_a_response_is_openais_response_object():
    (r,), runner = exchange({"input": "Capital of France?", "instructions": "Be brief.", "max_output_tokens": 32})
    response = Response.model_validate(r.json())
    assert r.status_code == 200 and response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == "Paris." and response.output[0].role == "assistant"
    assert response.instructions == "Be brief." and response.max_output_tokens == 32
    assert response.usage.input_tokens == len(runner.jobs[0].prompts[0]) and response.usage.output_tokens == 6
    assert prompt(runner).index("Be brief.") < prompt(runner).index("Capital of France?")


def test_a_previous_response_continues_its_conversation_without_its_instructions():
    (first, second), runner = exchange({"input": "Capital of France?", "instructions": "Be brief."},
                                       {"input": "And Spain?", "previous_response_id": "PREVIOUS"})
    assert second.status_code == 200 and second.json()["previous_response_id"] == first.json()["id"]
    text = prompt(runner)
    assert text.index("Capital of France?") < text.index("Paris.") < text.index("And Spain?")
    assert "Be brief." not in text


def test_the_stream_is_the_sdks_event_sequence_and_its_text_the_whole_answer():
    (r,), _ = exchange({"input": "Capital of France?", "stream": True})
    parsed = [STREAM_EVENT.validate_python(e) for e in events(r.text + "\ndata: [DONE]\n")]
    kinds = [e.type for e in parsed]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    assert "".join(e.delta for e in parsed if e.type == "response.output_text.delta") == "Paris."
    assert parsed[-1].response.output_text == "Paris."
    assert "event: response.created" in r.text  # the SSE event names, as OpenAI sends them


def test_function_calls_and_their_outputs_round_trip():
    body = {"input": "Weather in Lyon?", "tools": [WEATHER], "tool_choice": "required"}
    (r,), _ = exchange(body, runner=FakeRunner(CALL))
    (call,) = Response.model_validate(r.json()).output
    assert call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments) == {"city": "Lyon"}
    items = [{"role": "user", "content": "Weather in Lyon?"},
             {"type": "function_call", "call_id": call.call_id, "name": "get_weather", "arguments": call.arguments},
             {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}]
    (again,), runner = exchange({"input": items, "tools": [WEATHER]}, runner=FakeRunner(json.dumps({"response": "Sunny."})))
    assert Response.model_validate(again.json()).output_text == "Sunny."
    assert "sunny, 21 C" in prompt(runner) and '"get_weather"' in prompt(runner)
    (streamed,), _ = exchange({**body, "stream": True}, runner=FakeRunner(CALL))
    parsed = [STREAM_EVENT.validate_python(e) for e in events(streamed.text + "\ndata: [DONE]\n")]
    args = [e for e in parsed if e.type == "response.function_call_arguments.done"]
    assert len(args) == 1 and json.loads(args[0].arguments) == {"city": "Lyon"}
    # the arguments arrive as the model writes them (the fake runner: a byte per token), in one item
    deltas = [e for e in parsed if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) > 5 and "".join(e.delta for e in deltas) == args[0].arguments
    added = next(e for e in parsed if e.type == "response.output_item.added")
    assert added.item.arguments == "" and added.item.status == "in_progress"
    assert {e.item_id for e in deltas} == {added.item.id, parsed[-1].response.output[0].id}
    assert parsed[-1].response.output[0].arguments == args[0].arguments


def test_a_call_cut_by_max_output_tokens_is_an_incomplete_item_left_out_of_the_next_turn():
    body = {"input": "Weather in Lyon?", "tools": [WEATHER], "tool_choice": "required", "max_output_tokens": 62}
    (cut, follow), runner = exchange(body, {"input": "Go on.", "previous_response_id": "PREVIOUS"},
                                     runner=FakeRunner(CALL))
    response = Response.model_validate(cut.json())
    (call,) = response.output
    assert response.status == "incomplete" and call.status == "incomplete" and CALL.startswith('{"tool_call": ')
    assert call.arguments and not CALL.endswith(call.arguments)
    assert follow.status_code == 200 and "Lyon" not in prompt(runner).split("Go on.")[0].split("Weather in Lyon?")[1]


def test_cut_by_max_output_tokens_is_incomplete():
    (r,), _ = exchange({"input": "Capital of France?", "max_output_tokens": 2})
    response = Response.model_validate(r.json())
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "Pa"


def test_stored_responses_are_read_deleted_and_bounded():
    async def go():
        async with serving(FakeRunner(), stored_responses=2) as c:
            ids = [(await c.post("/v1/responses", json={"model": MODEL, "input": f"q{i}"})).json()["id"]
                   for i in range(3)]
            unstored = (await c.post("/v1/responses", json={"model": MODEL, "input": "x", "store": False})).json()["id"]
            got = [(await c.get(f"/v1/responses/{i}")).status_code for i in (*ids, unstored)]
            deleted = (await c.delete(f"/v1/responses/{ids[2]}")).json()
            return got, deleted, (await c.get(f"/v1/responses/{ids[2]}")).status_code
    got, deleted, after = asyncio.run(go())
    assert got == [404, 200, 200, 404]  # the oldest evicted; store false kept nothing
    assert deleted["deleted"] is True and after == 404


@pytest.mark.parametrize("body, status, param", [
    ({"input": "x", "previous_response_id": "resp_nope"}, 404, "previous_response_id"),
    ({"input": "x", "max_output_tokens": 1000}, 400, "max_output_tokens"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "x"}}}, 400, "text.format"),
    ({"input": "x", "tool_choice": "required"}, 400, "tool_choice"),
    ({"input": [{"type": "function_call_output"}]}, 400, None),
    ({"input": "x", "temperature": 5}, 400, "temperature"),
])
def test_errors_have_openais_shape(body, status, param):
    (r,), _ = exchange(body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    if param:
        assert error["param"] == param
