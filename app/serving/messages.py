"""Anthropic's Messages API, translated from the answer as it is generated (app/serving/base.py): the
whole `Message`, or its stream of events (message_start, ping, a block's start, deltas and stop,
message_delta, message_stop)."""
from __future__ import annotations

from typing import AsyncIterator

from llamba.engine.chat import ToolCall
from llamba.engine.chat.answer import Part
from llamba.app.protocol import messages as p

from .base import AnswerStream, sse


def stop_reason(answer, calls: bool) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) of an answer."""
    last = answer.events[-1] if answer.events else None
    if last is not None and last.finish_reason == "length":
        return "max_tokens", None
    if calls:
        return "tool_use", None
    if last is not None and last.stop is not None:
        return "stop_sequence", last.stop
    return "end_turn", None


def tool_use_id(call: ToolCall) -> str:
    return "toolu_" + call.id.removeprefix("call_")


def block(part: Part) -> p.ThinkingBlock | p.TextBlock | p.ToolUseBlock:
    if part.reasoning:
        return p.ThinkingBlock(thinking=part.text)
    if part.call is None:
        return p.TextBlock(text=part.text)
    return p.ToolUseBlock(id=tool_use_id(part.call), name=part.call.name,
                          input=part.call.arguments if part.closed and not part.cut else {})


def usage(answers: AnswerStream) -> p.Usage:
    cached = answers.job.cached_tokens
    return p.Usage(input_tokens=answers.job.prompt_tokens - cached, cache_read_input_tokens=cached,
                   output_tokens=answers.generated)


def message(head: dict, answers: AnswerStream) -> p.Message:
    """The whole message: its thinking block (if it thought), its text block (if there is text)
    or a block per call (a call cut by max_tokens left out), its stop reason and usage."""
    answer = answers.answers[0]
    _, calls = answer.reader.result()
    blocks = [block(part) for part in answer.reader.parts
              if (part.call is None and part.text) or (part.call is not None and not part.cut)]
    reason, sequence = stop_reason(answer, bool(calls))
    return p.Message(**head, content=blocks, stop_reason=reason, stop_sequence=sequence, usage=usage(answers))


def event(e) -> dict:
    return sse(e, e.type)


async def stream_events(answers: AnswerStream, head: dict) -> AsyncIterator[dict]:
    """The message's start (no content yet), a ping, then, as the answer is read, a text block and
    its deltas, or a tool_use block per call and its input's JSON as it is written; then the stop
    reason and usage, and message_stop."""
    yield event(p.MessageStartEvent(message=p.Message(**head, content=[], usage=usage(answers))))
    yield {"event": "ping", "data": '{"type": "ping"}'}
    async for _, changes in answers:
        for change in changes:
            index = change.part.index
            if change.kind == "opened":
                yield event(p.ContentBlockStartEvent(index=index, content_block=block(change.part)))
            elif change.kind == "added":
                delta = (p.ThinkingDelta(thinking=change.text) if change.part.reasoning else
                         p.TextDelta(text=change.text) if change.part.call is None else
                         p.InputJSONDelta(partial_json=change.text))
                yield event(p.ContentBlockDeltaEvent(index=index, delta=delta))
            else:
                yield event(p.ContentBlockStopEvent(index=index))
    done = message(head, answers)
    yield event(p.MessageDeltaEvent(delta=p.MessageDelta(stop_reason=done.stop_reason, stop_sequence=done.stop_sequence),
                                    usage=p.MessageDeltaUsage(output_tokens=done.usage.output_tokens)))
    yield event(p.MessageStopEvent())
