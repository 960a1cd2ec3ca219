"""Mistral's tool calls (Mistral 7B v0.3, Nemo, Small, Ministral), for models whose chat template
renders tools itself between `[AVAILABLE_TOOLS]` tags: the calls are a JSON list after
`[TOOL_CALLS]`, `[{"name": ..., "arguments": {...}, "id": "<9 letters or digits>"}, ...]`. Its
templates refuse any other id, so past calls' ids (OpenAI's `call_...`) are written as 9
characters of their hash, the same for a call and its result. With tool_choice "auto" the grammar
is lazy: it applies once the model writes `[TOOL_CALLS]` (a token of its own in Mistral's
vocabularies)."""
from __future__ import annotations

import hashlib

from .base import ToolFormat, any_of, call_schema, json_rule, objects_between, repeated, token_or_text
from ..json_scan import skip

TAG = "[TOOL_CALLS]"
ID = {"type": "string", "pattern": "^[a-zA-Z0-9]{9}$"}


def short_id(call_id: str | None) -> str:
    return hashlib.sha256((call_id or "").encode()).hexdigest()[:9]


class Mistral(ToolFormat):
    name = "mistral"
    tag = TAG

    def matches(self, template_source: str) -> bool:
        return TAG in template_source

    def grammar(self, tools, choice, parallel, after_result, special):
        schemas = []
        for tool in tools:
            schema = call_schema(tool, "arguments")
            schemas.append({**schema, "properties": {**schema["properties"], "id": ID},
                            "required": [*schema["required"], "id"]})
        calls = repeated("call", '", "', parallel)
        lark = f'start: {token_or_text(TAG, special)} "[" {calls} "]"\ncall: {json_rule(any_of(schemas))}\n'
        return lark, ((TAG,) if choice == "auto" else ())

    def history_message(self, message):
        message = super().history_message(message)
        if message.get("tool_calls"):
            message["tool_calls"] = [{**call, "id": short_id(call["id"])} for call in message["tool_calls"]]
        if message.get("role") == "tool":
            message["tool_call_id"] = short_id(message.get("tool_call_id"))
        return message

    def calls_start(self, text, start):
        start = super().calls_start(text, start)  # (after the tag: the list's "[")
        if start is None or not text.startswith(TAG, skip(text, 0)):
            return start
        if text[start] != "[":
            return start  # (not a list: read as text)
        start = skip(text, start + 1)
        return start if start < len(text) else None

    def calls(self, text, start, done):
        return objects_between(text, start, done, (",",), end="]")
