"""Tool calls for a model whose chat template knows nothing of tools (SmolLM2's), as llama.cpp's
generic handler asks for them: a system message lists the tools and asks for a JSON envelope —
`{"tool_call": {"name", "arguments"}}` (or `{"tool_calls": [...]}` when calls may be parallel), or
`{"response": "..."}` when the model may answer in words — and the grammar holds the answer to it
from the first token. Past calls and tool results are written into the history as that JSON."""
from __future__ import annotations

import json

from ..json_scan import scan
from .base import MAX_PARALLEL_CALLS, ToolFormat, any_of, call_schema, json_rule

INSTRUCTIONS = ("Respond in JSON format, either with `tool_call` (a request to call tools) or with "
                "`response` (a reply to the user's request). The tools you may call are: {tools}")
AFTER_RESULT = " Once a tool has given its result, answer the user in plain words, using it."
REQUIRED = "Respond in JSON format with `tool_call`: a request to call tools. The tools are: {tools}"


class Generic(ToolFormat):
    name = "generic"

    def matches(self, template_source: str) -> bool:
        return True  # (the fallback: tried last)

    def grammar(self, tools, choice, parallel, after_result, special):
        """With choice "auto" after a tool's result the answer may be plain words, the envelope
        applying only if it starts with "{" (constrained from the first token, 0 of 16
        default-model answers after a result were words: 10 called the tool again)."""
        one = any_of([call_schema(t, "arguments") for t in tools])
        # parallel calls: a few at most, and no more than there are tools (a small model asked for a
        # list goes on listing its one call until max_tokens)
        calls = ({"type": "object", "properties": {"tool_calls": {"type": "array", "items": one, "minItems": 1,
                                                                  "maxItems": min(MAX_PARALLEL_CALLS, len(tools))}},
                  "required": ["tool_calls"], "additionalProperties": False} if parallel else
                 {"type": "object", "properties": {"tool_call": one}, "required": ["tool_call"],
                  "additionalProperties": False})
        if choice == "auto":
            words = {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"],
                     "additionalProperties": False}
            calls = {"anyOf": [calls, words]}
        return f"start: {json_rule(calls)}\n", ("{",) if choice == "auto" and after_result else ()

    def prompt(self, loaded, history, tools, choice, after_result, now, extra=None):
        """The template without tools, after a system message that asks for the envelope (joined
        to the conversation's own system message, if it has one)."""
        listing = json.dumps([t["function"] for t in tools])
        text = (INSTRUCTIONS if choice == "auto" else REQUIRED).format(tools=listing)
        text += AFTER_RESULT if choice == "auto" and after_result else ""
        if history and history[0]["role"] == "system":
            text, history = history[0]["content"] + "\n\n" + text, history[1:]
        return loaded.chat_prompt_ids([{"role": "system", "content": text}, *history], now=now, extra=extra)

    def history_message(self, message):
        message = super().history_message(message)
        if message.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                     for c in message["tool_calls"]]
            envelope = {"tool_call": calls[0]} if len(calls) == 1 else {"tool_calls": calls}
            return {"role": "assistant", "content": json.dumps(envelope)}
        if message.get("role") == "tool":
            return {"role": "tool", "content": json.dumps({"tool_response": {"tool": message.get("name"),
                                                                             "content": message.get("content")}})}
        return message

    def calls(self, text, start, done):
        """One envelope: {"tool_call": ...}, {"tool_calls": [...]} or {"response": "..."}."""
        envelope = scan(text, start, done)
        fields, whole = envelope.children, envelope.end is not None
        if "response" in fields and text[fields["response"].start] == '"':
            return fields["response"], [], whole
        if "tool_calls" in fields:
            return None, list(fields["tool_calls"].children), whole
        return None, [fields["tool_call"]] if "tool_call" in fields else [], whole
