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
from llamba.engine.scheduler import Job, ModelRunner
from llamba.app import schemas as s


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def output_items(plan: ChatPlan, text: str) -> list[ResponseOutputMessage | ResponseFunctionToolCall]:
    """The answer as output items: a message with its text, or one function call per call."""
    content, calls = plan.read(text)
    items = [ResponseFunctionToolCall(type="function_call", id=new_id("fc"), call_id=c.id, name=c.name,
                                      arguments=c.json_arguments(), status="completed") for c in calls]
    if content or not calls:
        items.insert(0, message_item(content or ""))
    return items


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


def finished(head: dict, body: s.ResponseCreateRequest, job: Job, plan: ChatPlan, events: list) -> Response:
    text = "".join(e.text for e in events)
    cut = bool(events) and events[-1].finish_reason == "length"
    return response(head, body, "completed", output_items(plan, text), usage(job, len(events)), cut)


async def stream_events(runner: ModelRunner, job: Job, plan: ChatPlan, body: s.ResponseCreateRequest,
                        head: dict, on_done) -> AsyncIterator[dict]:
    """response.created and .in_progress; for a text answer the message item, its text part and a
    delta per token, then their .done events; where tool calls may come, the answer is read whole
    and each call is an item with one arguments delta; then response.completed (or .incomplete,
    cut by max_output_tokens), after `on_done(response)` has stored it."""
    sequence = iter(range(1 << 62))

    def sse(event) -> dict:
        event.sequence_number = next(sequence)
        return {"event": event.type, "data": event.model_dump_json(exclude_none=True)}

    yield sse(ResponseCreatedEvent(type="response.created", response=response(head, body), sequence_number=0))
    yield sse(ResponseInProgressEvent(type="response.in_progress", response=response(head, body), sequence_number=0))
    events, item_id = [], new_id("msg")
    streaming_text = plan.tool_format is None
    if streaming_text:
        yield sse(ResponseOutputItemAddedEvent(type="response.output_item.added", output_index=0, sequence_number=0,
                                               item=message_item("", "in_progress", item_id)))
        yield sse(ResponseContentPartAddedEvent(type="response.content_part.added", item_id=item_id, output_index=0,
                                                content_index=0, sequence_number=0,
                                                part=ResponseOutputText(type="output_text", text="", annotations=[])))
    async for event in runner.stream(job):
        events.append(event)
        if streaming_text and event.text:
            yield sse(ResponseTextDeltaEvent(type="response.output_text.delta", item_id=item_id, output_index=0,
                                             content_index=0, delta=event.text, logprobs=[], sequence_number=0))
    done = finished(head, body, job, plan, events)
    if streaming_text:
        done.output[0].id = item_id
    for index, item in enumerate(done.output):
        if streaming_text:
            text = item.content[0]
            yield sse(ResponseTextDoneEvent(type="response.output_text.done", item_id=item_id, output_index=0,
                                            content_index=0, text=text.text, logprobs=[], sequence_number=0))
            yield sse(ResponseContentPartDoneEvent(type="response.content_part.done", item_id=item_id, output_index=0,
                                                   content_index=0, part=text, sequence_number=0))
        elif item.type == "message":
            yield sse(ResponseOutputItemAddedEvent(type="response.output_item.added", output_index=index, item=item,
                                                   sequence_number=0))
        else:
            added = item.model_copy(update={"arguments": "", "status": "in_progress"})
            yield sse(ResponseOutputItemAddedEvent(type="response.output_item.added", output_index=index, item=added,
                                                   sequence_number=0))
            yield sse(ResponseFunctionCallArgumentsDeltaEvent(type="response.function_call_arguments.delta",
                                                              item_id=item.id, output_index=index,
                                                              delta=item.arguments, sequence_number=0))
            yield sse(ResponseFunctionCallArgumentsDoneEvent(type="response.function_call_arguments.done",
                                                             item_id=item.id, output_index=index, name=item.name,
                                                             arguments=item.arguments, sequence_number=0))
        yield sse(ResponseOutputItemDoneEvent(type="response.output_item.done", output_index=index, item=item,
                                              sequence_number=0))
    on_done(done)
    if done.status == "incomplete":
        yield sse(ResponseIncompleteEvent(type="response.incomplete", response=done, sequence_number=0))
    else:
        yield sse(ResponseCompletedEvent(type="response.completed", response=done, sequence_number=0))
