"""Anthropic's Messages API, assembled from the engine's token events with the anthropic package's
own types: the whole `Message`, or its stream of events (message_start, ping, a block's start,
deltas and stop, message_delta, message_stop)."""
from __future__ import annotations

import uuid
from typing import AsyncIterator

from anthropic.types import (InputJSONDelta, Message, MessageDeltaUsage, RawContentBlockDeltaEvent,
                             RawContentBlockStartEvent, RawContentBlockStopEvent, RawMessageDeltaEvent,
                             RawMessageStartEvent, RawMessageStopEvent, TextBlock, TextDelta, ToolUseBlock, Usage)
from anthropic.types.raw_message_delta_event import Delta

from llamba.engine.chat import ChatPlan, ToolCall
from llamba.engine.chat.answer import AnswerReader, Part
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


def tool_use_id(call: ToolCall) -> str:
    return "toolu_" + call.id.removeprefix("call_")


def block(part: Part) -> TextBlock | ToolUseBlock:
    if part.call is None:
        return TextBlock(type="text", text=part.text)
    return ToolUseBlock(type="tool_use", id=tool_use_id(part.call), name=part.call.name,
                        input=part.call.arguments if part.closed and not part.cut else {})


def message(head: dict, job: Job, reader: AnswerReader, events: list) -> Message:
    """The whole message: its text block (if there is text) or a block per call (a call cut by
    max_tokens left out), its stop reason and usage."""
    content, calls = reader.result()
    blocks = [block(p) for p in reader.parts if (p.call is None and p.text) or (p.call is not None and not p.cut)]
    reason, sequence = stop_reason(bool(calls), events)
    return Message(**head, type="message", role="assistant", content=blocks, stop_reason=reason, stop_sequence=sequence,
                   usage=usage(job, len(events)))


def read(plan: ChatPlan, events: list) -> AnswerReader:
    reader = plan.reader()
    reader.push("".join(e.text for e in events))
    reader.finish()
    return reader


def usage(job: Job, output_tokens: int) -> Usage:
    prompt = sum(map(len, job.prompts))
    return Usage(input_tokens=prompt - job.cached_tokens, cache_read_input_tokens=job.cached_tokens,
                 cache_creation_input_tokens=0, output_tokens=output_tokens)


def sse(event) -> dict:
    return {"event": event.type, "data": event.model_dump_json(exclude_none=True)}


async def stream_events(runner: ModelRunner, job: Job, plan: ChatPlan, head: dict) -> AsyncIterator[dict]:
    """The message's start (no content yet), a ping, then, as the answer is read
    (engine/chat/answer.py), a text block and its deltas, or a tool_use block per call and its
    input's JSON as it is written; then the stop reason and usage, and message_stop."""
    start = Message(**head, type="message", role="assistant", content=[], usage=usage(job, 0))
    yield sse(RawMessageStartEvent(type="message_start", message=start))
    yield {"event": "ping", "data": '{"type": "ping"}'}
    events, reader = [], plan.reader()
    async for event in runner.stream(job):
        events.append(event)
        for change in reader.push(event.text) + (reader.finish() if event.finish_reason else []):
            index = change.part.index
            if change.kind == "opened":
                yield sse(RawContentBlockStartEvent(type="content_block_start", index=index,
                                                    content_block=block(change.part)))
            elif change.kind == "added":
                delta = (TextDelta(type="text_delta", text=change.text) if change.part.call is None else
                         InputJSONDelta(type="input_json_delta", partial_json=change.text))
                yield sse(RawContentBlockDeltaEvent(type="content_block_delta", index=index, delta=delta))
            else:
                yield sse(RawContentBlockStopEvent(type="content_block_stop", index=index))
    done = message(head, job, reader, events)
    yield sse(RawMessageDeltaEvent(type="message_delta", delta=Delta(stop_reason=done.stop_reason,
                                                                     stop_sequence=done.stop_sequence),
                                   usage=MessageDeltaUsage(output_tokens=done.usage.output_tokens)))
    yield sse(RawMessageStopEvent(type="message_stop"))
