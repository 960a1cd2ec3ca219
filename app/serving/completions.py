"""OpenAI's chat completions and completions, assembled from the engine's token events: the whole
response, or its stream of chunks (logprobs, usage, tool calls, finish reasons)."""
from __future__ import annotations

from collections import defaultdict
from typing import AsyncIterator

from llamba.engine.chat import Change, ChatPlan, ToolCall
from llamba.engine.scheduler import Job, ModelRunner
from llamba.app import schemas as s

DONE = {"data": "[DONE]"}


def sse(response) -> dict:
    return {"data": response.model_dump_json()}


def token_text(tok, token_id: int, as_ids: bool) -> str:
    return f"token_id:{token_id}" if as_ids else tok.token_bytes(token_id).decode("utf-8", errors="replace")


def chat_logprobs(tok, events, as_ids: bool) -> s.ChoiceLogprobs:
    def entry(token_id, logprob):
        return dict(token=token_text(tok, token_id, as_ids), logprob=logprob, bytes=list(tok.token_bytes(token_id)))
    return s.ChoiceLogprobs(content=[
        s.ChatCompletionTokenLogprob(**entry(e.token_id, e.logprob),
                                     top_logprobs=[s.TopLogprob(**entry(i, lp)) for i, lp in e.top_logprobs])
        for e in events])


def completion_logprobs(tok, events, as_ids: bool, start: int = 0) -> s.CompletionLogprobs:
    out, offset = s.CompletionLogprobs(), start
    for e in events:
        out.tokens.append(token_text(tok, e.token_id, as_ids))
        out.token_logprobs.append(e.logprob)
        out.top_logprobs.append({token_text(tok, i, as_ids): lp for i, lp in e.top_logprobs})
        out.text_offset.append(offset)
        offset += len(e.text)
    return out


def usage(job: Job, completion_tokens: int) -> s.Usage:
    prompt_tokens = sum(map(len, job.prompts))
    return s.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens,
                   prompt_tokens_details=s.PromptTokensDetails(cached_tokens=job.cached_tokens))


def assistant_message(answer: tuple[str | None, list[ToolCall]]) -> s.ChatCompletionMessage:
    """The assistant's message: its tool calls (content null) where the answer is calls, else its text."""
    content, calls = answer
    return s.ChatCompletionMessage(content=content, tool_calls=[
        s.ToolCall(id=c.id, function=s.FunctionCall(name=c.name, arguments=c.json_arguments())) for c in calls] or None)


def tool_call_delta(change: Change) -> s.ChoiceDelta | None:
    """A chunk's delta for a change in a streamed answer: text as content, a call's start as its id,
    type and name, each piece of its arguments as written."""
    if change.part.call is None:
        return s.ChoiceDelta(content=change.text) if change.kind == "added" else None
    call, index = change.part.call, change.part.index
    if change.kind == "opened":
        return s.ChoiceDelta(tool_calls=[s.ToolCallDelta(index=index, id=call.id, type="function",
                                                         function=s.FunctionCallDelta(name=call.name, arguments=""))])
    if change.kind == "added":
        return s.ChoiceDelta(tool_calls=[s.ToolCallDelta(index=index, function=s.FunctionCallDelta(arguments=change.text))])
    return None


def finish_reason(message: s.ChatCompletionMessage, events) -> str:
    reason = events[-1].finish_reason if events else "stop"
    return "tool_calls" if message.tool_calls and reason != "length" else reason


def chat_completion(job: Job, events: dict[int, list], plan: ChatPlan, tok, body: s.ChatCompletionRequest,
                    head: dict) -> s.ChatCompletion:
    choices = []
    for i in range(job.choices):
        message = assistant_message(plan.read("".join(e.text for e in events[i])))
        choices.append(s.Choice(index=i, message=message, finish_reason=finish_reason(message, events[i]),
                                logprobs=chat_logprobs(tok, events[i], body.return_tokens_as_token_ids)
                                if body.logprobs else None))
    return s.ChatCompletion(**head, choices=choices, usage=usage(job, sum(map(len, events.values()))))


async def chat_chunks(runner: ModelRunner, job: Job, plan: ChatPlan, body: s.ChatCompletionRequest,
                      head: dict) -> AsyncIterator[dict]:
    """A chunk with the role for each choice, a chunk per token, then a chunk with an empty delta
    and the finish reason for each choice; the usage if asked; [DONE]. Where tool calls may come,
    a choice's output is read as it comes (engine/chat/answer.py): its text, or each call's id,
    type and name once the name is written, then its arguments piece by piece."""
    tok, as_ids = runner.loaded.tokenizer, body.return_tokens_as_token_ids

    def chunk(index: int, delta: s.ChoiceDelta, events=(), finish=None) -> dict:
        logprobs = chat_logprobs(tok, events, as_ids) if body.logprobs and events else None
        return sse(s.ChatCompletionChunk(**head, choices=[s.ChunkChoice(index=index, delta=delta, logprobs=logprobs,
                                                                        finish_reason=finish)]))

    for i in range(job.choices):
        yield chunk(i, s.ChoiceDelta(role="assistant", content=""))
    generated, readers = 0, defaultdict(plan.reader)
    async for event in runner.stream(job):
        generated += 1
        if not plan.tool_format:
            if event.text or body.logprobs:
                yield chunk(event.index, s.ChoiceDelta(content=event.text), [event])
            if event.finish_reason:
                yield chunk(event.index, s.ChoiceDelta(), finish=event.finish_reason)
            continue
        reader = readers[event.index]
        deltas = [delta for change in reader.push(event.text) + (reader.finish() if event.finish_reason else [])
                  if (delta := tool_call_delta(change))]
        for k, delta in enumerate(deltas or ([s.ChoiceDelta()] if body.logprobs else [])):
            yield chunk(event.index, delta, [event] if k == 0 else ())
        if event.finish_reason:
            message = assistant_message(reader.result())
            yield chunk(event.index, s.ChoiceDelta(), finish=finish_reason(message, [event]))
    if body.stream_options and body.stream_options.include_usage:
        yield sse(s.ChatCompletionChunk(**head, choices=[], usage=usage(job, generated)))
    yield DONE


def echo_text(tok, job: Job, index: int, echo: bool) -> str:
    return tok.decode(job.prompts[index // job.n]) if echo else ""


def completion(job: Job, events: dict[int, list], tok, body: s.CompletionRequest, head: dict) -> s.Completion:
    choices = []
    for i in range(job.choices):
        echo = echo_text(tok, job, i, body.echo)
        choices.append(s.CompletionChoice(
            index=i, text=echo + "".join(e.text for e in events[i]),
            logprobs=completion_logprobs(tok, events[i], body.return_tokens_as_token_ids, len(echo))
            if body.logprobs is not None else None,
            finish_reason=events[i][-1].finish_reason if events[i] else "stop"))
    return s.Completion(**head, choices=choices, usage=usage(job, sum(map(len, events.values()))))


async def completion_chunks(runner: ModelRunner, job: Job, body: s.CompletionRequest,
                            head: dict) -> AsyncIterator[dict]:
    """The echoed prompt if asked, a chunk per token, a final chunk with the finish reason for
    each choice; the usage if asked; [DONE]."""
    tok, as_ids = runner.loaded.tokenizer, body.return_tokens_as_token_ids

    def chunk(index: int, text: str, events=(), finish=None) -> dict:
        logprobs = completion_logprobs(tok, events, as_ids) if body.logprobs is not None and events else None
        return sse(s.Completion(**head, choices=[s.CompletionChoice(index=index, text=text, logprobs=logprobs,
                                                                    finish_reason=finish)]))

    if body.echo:
        for i in range(job.choices):
            yield chunk(i, echo_text(tok, job, i, True))
    generated = 0
    async for event in runner.stream(job):
        generated += 1
        if event.text or body.logprobs is not None:
            yield chunk(event.index, event.text, [event])
        if event.finish_reason:
            yield chunk(event.index, "", finish=event.finish_reason)
    if body.stream_options and body.stream_options.include_usage:
        yield sse(s.Completion(**head, choices=[], usage=usage(job, generated)))
    yield DONE
