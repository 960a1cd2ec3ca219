"""OpenAI's Responses API, assembled from the engine's token events with the openai package's own
types (`openai.types.responses`, as vLLM builds on them): the whole `Response`, or its stream of
events, each with its `sequence_number`, in the order the SDK parses them."""
from __future__ import annotations

import time
import uuid
from typing import AsyncIterator

from openai.types.responses import (FunctionTool, Response, ResponseCompletedEvent, ResponseContentPartAddedEvent,
                                    ResponseContentPartDoneEvent, ResponseCreatedEvent,
                                    ResponseFunctionCallArgumentsDeltaEvent, ResponseFunctionCallArgumentsDoneEvent,
                                    ResponseFunctionToolCall, ResponseIncompleteEvent, ResponseInProgressEvent,
                                    ResponseOutputItemAddedEvent, ResponseOutputItemDoneEvent, ResponseOutputMessage,
                                    ResponseOutputText, ResponseTextDeltaEvent, ResponseTextDoneEvent, ResponseUsage)
from openai.types.responses.response import IncompleteDetails
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from llamba.engine.chat import ChatPlan
from llamba.engine.chat.answer import Part
from llamba.engine.scheduler import Job, ModelRunner
from llamba.app import schemas as s


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def output_item(part: Part, item_id: str) -> ResponseOutputMessage | ResponseFunctionToolCall:
    """A part of the answer as an output item: a message with its text, or a function call (its
    status incomplete where max_output_tokens cut it)."""
    if part.call is None:
        return message_item(part.text, "completed" if part.closed else "in_progress", item_id)
    status = "incomplete" if part.cut else "completed" if part.closed else "in_progress"
    return ResponseFunctionToolCall(type="function_call", id=item_id, call_id=part.call.id, name=part.call.name,
                                    arguments=part.call.json_arguments() if status == "completed" else part.text,
                                    status=status)


def item_id(part: Part) -> str:
    return new_id("msg" if part.call is None else "fc")


def output_items(plan: ChatPlan, text: str) -> list[ResponseOutputMessage | ResponseFunctionToolCall]:
    """The answer as output items: a message with its text, or one function call per call."""
    reader = plan.reader()
    reader.push(text)
    reader.finish()
    return [output_item(part, item_id(part)) for part in reader.parts]


def message_item(text: str, status: str = "completed", item_id: str | None = None) -> ResponseOutputMessage:
    parts = [ResponseOutputText(type="output_text", text=text, annotations=[])] if status == "completed" else []
    return ResponseOutputMessage(type="message", id=item_id or new_id("msg"), role="assistant", status=status,
                                 content=parts)


def usage(job: Job, output_tokens: int) -> ResponseUsage:
    input_tokens = sum(map(len, job.prompts))
    # (the prefix cache keeps every prompt token it did not have: those are its writes)
    details = InputTokensDetails(cached_tokens=job.cached_tokens, cache_write_tokens=input_tokens - job.cached_tokens)
    return ResponseUsage(input_tokens=input_tokens, input_tokens_details=details, output_tokens=output_tokens,
                         output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
                         total_tokens=input_tokens + output_tokens)


def response(head: dict, body: s.ResponseCreateRequest, status: str = "in_progress", output=(), usage=None,
             cut: bool = False) -> Response:
    """The Response object: what the request asked (tools, sampling, text format) and, once it is
    done, its output and usage; `cut`: ended by max_output_tokens."""
    return Response(
        **head, object="response", status="incomplete" if cut else status, output=list(output), usage=usage,
        incomplete_details=IncompleteDetails(reason="max_output_tokens") if cut else None,
        completed_at=time.time() if status == "completed" and not cut else None,
        instructions=body.instructions, max_output_tokens=body.max_output_tokens, metadata=body.metadata,
        parallel_tool_calls=body.parallel_tool_calls, previous_response_id=body.previous_response_id,
        temperature=body.temperature, top_p=body.top_p, text=body.text_config(), store=body.store,
        tool_choice=body.tool_choice_value(),
        tools=[FunctionTool(type="function", name=t.name, description=t.description, parameters=t.parameters,
                            strict=t.strict) for t in body.tools or []])


def finished(head: dict, body: s.ResponseCreateRequest, job: Job, output: list, events: list) -> Response:
    cut = bool(events) and events[-1].finish_reason == "length"
    return response(head, body, "completed", output, usage(job, len(events)), cut)


async def stream_events(runner: ModelRunner, job: Job, plan: ChatPlan, body: s.ResponseCreateRequest,
                        head: dict, on_done) -> AsyncIterator[dict]:
    """response.created and .in_progress; then, as the answer is read (engine/chat/answer.py), a
    text answer's message item, its text part and its deltas, or an item per function call and
    its arguments' deltas as they are written, each closed by its .done events; then
    response.completed (or .incomplete, cut by max_output_tokens), after `on_done(response)` has
    stored it."""
    sequence = iter(range(1 << 62))

    def sse(event) -> dict:
        event.sequence_number = next(sequence)
        return {"event": event.type, "data": event.model_dump_json(exclude_none=True)}

    yield sse(ResponseCreatedEvent(type="response.created", response=response(head, body), sequence_number=0))
    yield sse(ResponseInProgressEvent(type="response.in_progress", response=response(head, body), sequence_number=0))
    events, reader, ids = [], plan.reader(), {}
    async for event in runner.stream(job):
        events.append(event)
        for change in reader.push(event.text) + (reader.finish() if event.finish_reason else []):
            part, index = change.part, change.part.index
            if change.kind == "opened":
                ids[index] = item_id(part)
                yield sse(ResponseOutputItemAddedEvent(type="response.output_item.added", output_index=index,
                                                       item=output_item(part, ids[index]), sequence_number=0))
                if part.call is None:
                    yield sse(ResponseContentPartAddedEvent(
                        type="response.content_part.added", item_id=ids[index], output_index=index, content_index=0,
                        part=ResponseOutputText(type="output_text", text="", annotations=[]), sequence_number=0))
            elif change.kind == "added" and part.call is None:
                yield sse(ResponseTextDeltaEvent(type="response.output_text.delta", item_id=ids[index],
                                                 output_index=index, content_index=0, delta=change.text, logprobs=[],
                                                 sequence_number=0))
            elif change.kind == "added":
                yield sse(ResponseFunctionCallArgumentsDeltaEvent(type="response.function_call_arguments.delta",
                                                                  item_id=ids[index], output_index=index,
                                                                  delta=change.text, sequence_number=0))
            else:
                item = output_item(part, ids[index])
                if part.call is None:
                    text = item.content[0]
                    yield sse(ResponseTextDoneEvent(type="response.output_text.done", item_id=item.id,
                                                    output_index=index, content_index=0, text=text.text, logprobs=[],
                                                    sequence_number=0))
                    yield sse(ResponseContentPartDoneEvent(type="response.content_part.done", item_id=item.id,
                                                           output_index=index, content_index=0, part=text,
                                                           sequence_number=0))
                else:
                    yield sse(ResponseFunctionCallArgumentsDoneEvent(type="response.function_call_arguments.done",
                                                                     item_id=item.id, output_index=index,
                                                                     name=item.name, arguments=item.arguments,
                                                                     sequence_number=0))
                yield sse(ResponseOutputItemDoneEvent(type="response.output_item.done", output_index=index, item=item,
                                                      sequence_number=0))
    done = finished(head, body, job, [output_item(part, ids[part.index]) for part in reader.parts], events)
    on_done(done)
    if done.status == "incomplete":
        yield sse(ResponseIncompleteEvent(type="response.incomplete", response=done, sequence_number=0))
    else:
        yield sse(ResponseCompletedEvent(type="response.completed", response=done, sequence_number=0))
