"""Anthropic's Messages API, assembled from the engine's token events with the anthropic package's
own types: the whole `Message`, or its stream of events (message_start, ping, a block's start,
deltas and stop, message_delta, message_stop)."""
from __future__ import annotations

import json
import uuid
from typing import AsyncIterator

from anthropic.types import (InputJSONDelta, Message, MessageDeltaUsage, RawContentBlockDeltaEvent,
                             RawContentBlockStartEvent, RawContentBlockStopEvent, RawMessageDeltaEvent,
                             RawMessageStartEvent, RawMessageStopEvent, TextBlock, TextDelta, ToolUseBlock, Usage)
from anthropic.types.raw_message_delta_event import Delta

from llamba.engine.chat import ChatPlan
from llamba.engine.scheduler import Job, ModelRunner


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def stop_reason(plan_calls: bool, events: list) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) of an answer."""
    last = events[-1] if events else None
    if last is not None and last.finish_reason == "length":
        return "max_tokens", None
    if plan_calls:
        return "tool_use", None
    if last is not None and last.stop is not None:
        return "stop_sequence", last.stop
    return "end_turn", None


def message(head: dict, job: Job, plan: ChatPlan, events: list) -> Message:
    content, calls = plan.read("".join(e.text for e in events))
    blocks = [TextBlock(type="text", text=content)] if content else []
    blocks += [ToolUseBlock(type="tool_use", id=new_id("toolu"), name=c.name, input=c.arguments) for c in calls]
    reason, sequence = stop_reason(bool(calls), events)
    return Message(**head, type="message", role="assistant", content=blocks, stop_reason=reason, stop_sequence=sequence,
                   usage=usage(job, len(events)))


def usage(job: Job, output_tokens: int) -> Usage:
    prompt = sum(map(len, job.prompts))
    return Usage(input_tokens=prompt - job.cached_tokens, cache_read_input_tokens=job.cached_tokens,
                 cache_creation_input_tokens=0, output_tokens=output_tokens)


def sse(event) -> dict:
    return {"event": event.type, "data": event.model_dump_json(exclude_none=True)}


async def stream_events(runner: ModelRunner, job: Job, plan: ChatPlan, head: dict) -> AsyncIterator[dict]:
    """The message's start (no content yet), a ping, then a text block streamed token by token;
    where tool calls may come, the answer is read whole and each block sent with its input in one
    delta. Then the stop reason and usage, and message_stop."""
    start = Message(**head, type="message", role="assistant", content=[], usage=usage(job, 0))
    yield sse(RawMessageStartEvent(type="message_start", message=start))
    yield {"event": "ping", "data": '{"type": "ping"}'}
    events, streaming_text = [], plan.tool_format is None
    if streaming_text:
        yield sse(RawContentBlockStartEvent(type="content_block_start", index=0,
                                            content_block=TextBlock(type="text", text="")))
    async for event in runner.stream(job):
        events.append(event)
        if streaming_text and event.text:
            yield sse(RawContentBlockDeltaEvent(type="content_block_delta", index=0,
                                                delta=TextDelta(type="text_delta", text=event.text)))
    done = message(head, job, plan, events)
    if streaming_text:
        yield sse(RawContentBlockStopEvent(type="content_block_stop", index=0))
    else:
        for index, block in enumerate(done.content):
            empty = block.model_copy(update={"input": {}}) if block.type == "tool_use" else block.model_copy(
                update={"text": ""})
            yield sse(RawContentBlockStartEvent(type="content_block_start", index=index, content_block=empty))
            delta = (InputJSONDelta(type="input_json_delta", partial_json=json.dumps(block.input, ensure_ascii=False)) if block.type == "tool_use"
                     else TextDelta(type="text_delta", text=block.text))
            yield sse(RawContentBlockDeltaEvent(type="content_block_delta", index=index, delta=delta))
            yield sse(RawContentBlockStopEvent(type="content_block_stop", index=index))
    yield sse(RawMessageDeltaEvent(type="message_delta", delta=Delta(stop_reason=done.stop_reason,
                                                                     stop_sequence=done.stop_sequence),
                                   usage=MessageDeltaUsage(output_tokens=done.usage.output_tokens)))
    yield sse(RawMessageStopEvent(type="message_stop"))
