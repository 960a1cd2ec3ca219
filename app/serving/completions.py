"""OpenAI's chat completions and completions, translated from the answers as they are generated
(app/serving/base.py): the whole response, or its stream of chunks (logprobs, usage, tool calls,
finish reasons)."""
from __future__ import annotations

from typing import AsyncIterator

from llamba.engine.chat import Change
from llamba.engine.chat.answer import AnswerReader
from llamba.app.protocol import completions as p

from .base import DONE, AnswerStream, sse


def usage(answers: AnswerStream) -> p.Usage:
    job = answers.job
    return p.Usage(prompt_tokens=job.prompt_tokens, completion_tokens=answers.generated,
                   total_tokens=job.prompt_tokens + answers.generated,
                   prompt_tokens_details=p.PromptTokensDetails(cached_tokens=job.cached_tokens),
                   completion_tokens_details=p.CompletionTokensDetails(
                       reasoning_tokens=answers.reasoning_tokens, accepted_prediction_tokens=job.accepted_tokens,
                       rejected_prediction_tokens=job.drafted_tokens - job.accepted_tokens))


def chunk_event(chunk: p.ChatCompletionChunk | p.Completion) -> dict:
    return sse(chunk, omit_none=False)  # (OpenAI's chunks leave out only what OMIT_NONE marks)


def token_text(tok, token_id: int, as_ids: bool) -> str:
    return f"token_id:{token_id}" if as_ids else tok.token_bytes(token_id).decode("utf-8", errors="replace")


def chat_logprobs(tok, events, as_ids: bool) -> p.ChoiceLogprobs:
    def entry(token_id, logprob):
        return dict(token=token_text(tok, token_id, as_ids), logprob=logprob, bytes=list(tok.token_bytes(token_id)))
    return p.ChoiceLogprobs(content=[
        p.ChatCompletionTokenLogprob(**entry(e.token_id, e.logprob),
                                     top_logprobs=[p.TopLogprob(**entry(i, lp)) for i, lp in e.top_logprobs])
        for e in events])


def completion_logprobs(tok, events, as_ids: bool, start: int = 0) -> p.CompletionLogprobs:
    out, offset = p.CompletionLogprobs(), start
    for e in events:
        out.tokens.append(token_text(tok, e.token_id, as_ids))
        out.token_logprobs.append(e.logprob)
        out.top_logprobs.append({token_text(tok, i, as_ids): lp for i, lp in e.top_logprobs})
        out.text_offset.append(offset)
        offset += len(e.text)
    return out


def assistant_message(reader: AnswerReader) -> p.ChatCompletionMessage:
    """The assistant's message: its tool calls (content null) where the answer is calls, else its
    text; its thinking apart."""
    content, calls = reader.result()
    return p.ChatCompletionMessage(content=content, reasoning_content=reader.reasoning, tool_calls=[
        p.ToolCall(id=c.id, function=p.FunctionCall(name=c.name, arguments=c.json_arguments())) for c in calls] or None)


def chat_delta(change: Change, first: int) -> p.ChoiceDelta | None:
    """A chunk's delta for a change in an answer: thinking as reasoning_content, text as content,
    a call's start as its id, type and name, each piece of its arguments as written (`first`: the
    index of the answer's first part after any thinking)."""
    if change.part.reasoning:
        return p.ChoiceDelta(reasoning_content=change.text) if change.kind == "added" else None
    if change.part.call is None:
        return p.ChoiceDelta(content=change.text) if change.kind == "added" else None
    call, index = change.part.call, change.part.index - first
    if change.kind == "opened":
        return p.ChoiceDelta(tool_calls=[p.ToolCallDelta(index=index, id=call.id, type="function",
                                                         function=p.FunctionCallDelta(name=call.name, arguments=""))])
    if change.kind == "added":
        return p.ChoiceDelta(tool_calls=[p.ToolCallDelta(index=index, function=p.FunctionCallDelta(arguments=change.text))])
    return None


def finish_reason(message: p.ChatCompletionMessage, reason: str) -> str:
    return "tool_calls" if message.tool_calls and reason != "length" else reason


def chat_completion(answers: AnswerStream, tok, body: p.ChatCompletionRequest, head: dict) -> p.ChatCompletion:
    choices = []
    for i, answer in enumerate(answers.answers):
        message = assistant_message(answer.reader)
        choices.append(p.Choice(index=i, message=message, finish_reason=finish_reason(message, answer.finish_reason),
                                logprobs=chat_logprobs(tok, answer.events, body.return_tokens_as_token_ids)
                                if body.logprobs else None))
    return p.ChatCompletion(**head, choices=choices, usage=usage(answers))


async def chat_chunks(answers: AnswerStream, tok, body: p.ChatCompletionRequest, head: dict) -> AsyncIterator[dict]:
    """A chunk with the role for each choice; for each token, a chunk per change it made to its
    answer (its text, or a call's id, type and name once the name is written, then its arguments
    piece by piece), the token's logprobs on the first (an empty delta carries them where it
    changed nothing); a chunk with an empty delta and the finish reason as each choice ends; the
    usage if asked; [DONE]."""
    as_ids = body.return_tokens_as_token_ids

    def chunk(index: int, delta: p.ChoiceDelta, events=(), finish=None) -> dict:
        logprobs = chat_logprobs(tok, events, as_ids) if body.logprobs and events else None
        return chunk_event(p.ChatCompletionChunk(**head, choices=[
            p.ChunkChoice(index=index, delta=delta, logprobs=logprobs, finish_reason=finish)]))

    for i in range(answers.job.choices):
        yield chunk(i, p.ChoiceDelta(role="assistant", content=""))
    async for event, changes in answers:
        first = answers.answers[event.index].reader.first
        deltas = [delta for change in changes if (delta := chat_delta(change, first))]
        for k, delta in enumerate(deltas or ([p.ChoiceDelta()] if body.logprobs else [])):
            yield chunk(event.index, delta, [event] if k == 0 else ())
        if event.finish_reason:
            message = assistant_message(answers.answers[event.index].reader)
            yield chunk(event.index, p.ChoiceDelta(), finish=finish_reason(message, event.finish_reason))
    if body.stream_options and body.stream_options.include_usage:
        yield chunk_event(p.ChatCompletionChunk(**head, choices=[], usage=usage(answers)))
    yield DONE


def echo_text(tok, answers: AnswerStream, index: int, echo: bool) -> str:
    job = answers.job
    return tok.decode(job.prompts[index // job.n]) if echo else ""


def completion(answers: AnswerStream, tok, body: p.CompletionRequest, head: dict) -> p.Completion:
    choices = []
    for i, answer in enumerate(answers.answers):
        echo = echo_text(tok, answers, i, body.echo)
        choices.append(p.CompletionChoice(
            index=i, text=echo + answer.text,
            logprobs=completion_logprobs(tok, answer.events, body.return_tokens_as_token_ids, len(echo))
            if body.logprobs is not None else None, finish_reason=answer.finish_reason))
    return p.Completion(**head, choices=choices, usage=usage(answers))


async def completion_chunks(answers: AnswerStream, tok, body: p.CompletionRequest, head: dict) -> AsyncIterator[dict]:
    """The echoed prompt if asked, a chunk per token, a final chunk with the finish reason for
    each choice; the usage if asked; [DONE]."""
    as_ids = body.return_tokens_as_token_ids

    def chunk(index: int, text: str, events=(), finish=None) -> dict:
        logprobs = completion_logprobs(tok, events, as_ids) if body.logprobs is not None and events else None
        return chunk_event(p.Completion(**head, choices=[p.CompletionChoice(index=index, text=text, logprobs=logprobs,
                                                                            finish_reason=finish)]))

    if body.echo:
        for i in range(answers.job.choices):
            yield chunk(i, echo_text(tok, answers, i, True))
    async for event, _ in answers:
        if event.text or body.logprobs is not None:
            yield chunk(event.index, event.text, [event])
        if event.finish_reason:
            yield chunk(event.index, "", finish=event.finish_reason)
    if body.stream_options and body.stream_options.include_usage:
        yield chunk_event(p.Completion(**head, choices=[], usage=usage(answers)))
    yield DONE
