"""OpenAI's Responses API, translated from the answer as it is generated (app/serving/base.py): the
whole `Response`, or its stream of events, each with its `sequence_number`, in the order the SDK
parses them; and the conversation a response continues (`previous_response_id`)."""
from __future__ import annotations

import time
from typing import AsyncIterator, Callable

from llamba.engine.chat.answer import Part
from llamba.app.protocol import responses as p
from llamba.app.protocol.common import new_id

from .base import AnswerStream, sse


def add_call(messages: list[dict], call_id: str, name: str, arguments: str, reasoning: str = "") -> None:
    """A tool call joins the assistant's message of calls just before it (calls made together),
    or starts one (with the reasoning before it, if any)."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if messages and messages[-1].get("tool_calls"):
        messages[-1]["tool_calls"].append(call)
    else:
        messages.append({"role": "assistant", "content": "", "tool_calls": [call], **thought(reasoning)})


def thought(reasoning: str) -> dict:
    """An assistant message's reasoning, as templates read it (Qwen 3's reasoning_content)."""
    return {"reasoning_content": reasoning} if reasoning else {}


def conversation(body: p.ResponseCreateRequest, previous: list[dict]) -> list[dict]:
    """The chat so far as the planner takes it: the previous response's (without its
    instructions, which do not carry over, as OpenAI's), then this request's input items."""
    messages = list(previous)
    names = {c["id"]: c["function"]["name"] for m in previous for c in m.get("tool_calls", [])}
    items = [p.InputMessage(role="user", content=body.input)] if isinstance(body.input, str) else body.input
    reasoning = ""  # a reasoning item's, for the assistant's message after it
    for item in items:
        if item.type == "reasoning":
            reasoning = item.text()
            continue
        if item.type == "message":
            messages.append({"role": "system" if item.role == "developer" else item.role, "content": item.text(),
                             **(thought(reasoning) if item.role == "assistant" else {})})
        elif item.type == "function_call":
            names[item.call_id] = item.name
            add_call(messages, item.call_id, item.name, item.arguments, reasoning)
        else:
            messages.append({"role": "tool", "tool_call_id": item.call_id, "name": names.get(item.call_id, ""),
                             "content": item.text()})
        reasoning = ""
    return messages


def as_messages(done: p.Response) -> list[dict]:
    """A response's output as the assistant's messages, for the next turn."""
    messages, reasoning = [], ""
    for item in done.output:
        if item.type == "reasoning":
            reasoning = "".join(c.text for c in item.content)
        elif item.type == "message":
            messages.append({"role": "assistant", "content": "".join(c.text for c in item.content), **thought(reasoning)})
        elif item.status == "completed":  # (a call cut by max_output_tokens has no arguments to give back)
            add_call(messages, item.call_id, item.name, item.arguments, reasoning)
    return messages


def output_item(part: Part, item_id: str) -> p.OutputItem:
    """A part of the answer as an output item: the reasoning, a message with its text, or a
    function call (its status incomplete where max_output_tokens cut it)."""
    if part.reasoning:
        status = "completed" if part.closed else "in_progress"
        return p.ResponseReasoningItem(id=item_id, status=status,
                                       content=[p.ResponseReasoningText(text=part.text)] if part.closed else [])
    if part.call is None:
        status = "completed" if part.closed else "in_progress"
        content = [p.ResponseOutputText(text=part.text)] if status == "completed" else []
        return p.ResponseOutputMessage(id=item_id, status=status, content=content)
    status = "incomplete" if part.cut else "completed" if part.closed else "in_progress"
    return p.ResponseFunctionToolCall(id=item_id, call_id=part.call.id, name=part.call.name, status=status,
                                      arguments=part.call.json_arguments() if status == "completed" else part.text)


def item_id(part: Part) -> str:
    return new_id("rs_" if part.reasoning else "msg_" if part.call is None else "fc_")


def usage(answers: AnswerStream) -> p.ResponseUsage:
    prompt, cached, output = answers.job.prompt_tokens, answers.job.cached_tokens, answers.generated
    # (the prefix cache keeps every prompt token it did not have: those are its writes)
    details = p.InputTokensDetails(cached_tokens=cached, cache_write_tokens=prompt - cached)
    return p.ResponseUsage(input_tokens=prompt, input_tokens_details=details, output_tokens=output,
                           output_tokens_details=p.OutputTokensDetails(reasoning_tokens=answers.reasoning_tokens),
                           total_tokens=prompt + output)


def response(head: dict, body: p.ResponseCreateRequest, status: str = "in_progress", output=(), usage=None,
             cut: bool = False) -> p.Response:
    """The Response object: what the request asked (tools, sampling, text format) and, once it is
    done, its output and usage; `cut`: ended by max_output_tokens."""
    return p.Response(
        **head, status="incomplete" if cut else status, output=list(output), usage=usage,
        incomplete_details=p.IncompleteDetails(reason="max_output_tokens") if cut else None,
        completed_at=time.time() if status == "completed" and not cut else None,
        instructions=body.instructions, max_output_tokens=body.max_output_tokens, metadata=body.metadata,
        parallel_tool_calls=body.parallel_tool_calls, previous_response_id=body.previous_response_id,
        temperature=body.temperature, top_p=body.top_p, text=body.text_config(), store=body.store,
        tool_choice=body.tool_choice_value(),
        tools=[p.FunctionTool(name=t.name, description=t.description, parameters=t.parameters, strict=t.strict)
               for t in body.tools or []])


def finished(head: dict, body: p.ResponseCreateRequest, answers: AnswerStream, ids: dict[int, str]) -> p.Response:
    """The whole response, its items' ids as streamed (`ids`: by part; new ones where not streamed)."""
    answer = answers.answers[0]
    output = [output_item(part, ids.get(part.index) or item_id(part)) for part in answer.reader.parts]
    return response(head, body, "completed", output, usage(answers), answer.finish_reason == "length")


async def stream_events(answers: AnswerStream, body: p.ResponseCreateRequest, head: dict,
                        on_done: Callable[[p.Response], None]) -> AsyncIterator[dict]:
    """response.created and .in_progress; then, as the answer is read, a text answer's message
    item, its text part and its deltas, or an item per function call and its arguments' deltas as
    they are written, each closed by its .done events; then response.completed (or .incomplete,
    cut by max_output_tokens), after `on_done(response)` has stored it."""
    sequence = iter(range(1 << 62))

    def event(cls, **fields) -> dict:
        e = cls(sequence_number=next(sequence), **fields)
        return sse(e, e.type)

    yield event(p.ResponseLifecycleEvent, type="response.created", response=response(head, body))
    yield event(p.ResponseLifecycleEvent, type="response.in_progress", response=response(head, body))
    ids = {}
    async for _, changes in answers:
        for change in changes:
            part, index = change.part, change.part.index
            if change.kind == "opened":
                ids[index] = item_id(part)
                yield event(p.ResponseOutputItemEvent, type="response.output_item.added", output_index=index,
                            item=output_item(part, ids[index]))
                if part.call is None and not part.reasoning:
                    yield event(p.ResponseContentPartEvent, type="response.content_part.added", item_id=ids[index],
                                output_index=index, part=p.ResponseOutputText(text=""))
            elif change.kind == "added" and part.reasoning:
                yield event(p.ResponseReasoningTextDeltaEvent, item_id=ids[index], output_index=index, delta=change.text)
            elif change.kind == "added" and part.call is None:
                yield event(p.ResponseTextDeltaEvent, item_id=ids[index], output_index=index, delta=change.text)
            elif change.kind == "added":
                yield event(p.ResponseFunctionCallArgumentsDeltaEvent, item_id=ids[index], output_index=index,
                            delta=change.text)
            else:
                item = output_item(part, ids[index])
                if part.reasoning:
                    yield event(p.ResponseReasoningTextDoneEvent, item_id=item.id, output_index=index, text=part.text)
                elif part.call is None:
                    text = item.content[0]
                    yield event(p.ResponseTextDoneEvent, item_id=item.id, output_index=index, text=text.text)
                    yield event(p.ResponseContentPartEvent, type="response.content_part.done", item_id=item.id,
                                output_index=index, part=text)
                else:
                    yield event(p.ResponseFunctionCallArgumentsDoneEvent, item_id=item.id, output_index=index,
                                name=item.name, arguments=item.arguments)
                yield event(p.ResponseOutputItemEvent, type="response.output_item.done", output_index=index, item=item)
    done = finished(head, body, answers, ids)
    on_done(done)
    kind = "response.incomplete" if done.status == "incomplete" else "response.completed"
    yield event(p.ResponseLifecycleEvent, type=kind, response=done)
