"""Hermes-style tool calls (Qwen 2.5, Qwen 3, Hermes 2 Pro and 3), for models whose chat template
renders tools itself between `<tools>` tags: each call is a JSON object
`{"name": ..., "arguments": {...}}` inside `<tool_call>` ... `</tool_call>`, several one after
another. (In Qwen's vocabularies both tags are tokens of their own.) With tool_choice "auto" the
grammar is lazy: it applies once the model writes `<tool_call>`."""
from __future__ import annotations

from .base import ToolFormat, any_of, call_schema, json_rule, objects_between, repeated, token_or_text

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class Hermes(ToolFormat):
    name = "hermes"
    tag = OPEN

    def matches(self, template_source: str) -> bool:
        return OPEN in template_source

    def grammar(self, tools, choice, parallel, after_result, special):
        open_, close = token_or_text(OPEN, special), token_or_text(CLOSE, special)
        calls = repeated("call", '"\\n"', parallel)
        lark = (f'start: {calls}\ncall: {open_} "\\n" json "\\n" {close}\n'
                f'json: {json_rule(any_of([call_schema(t, "arguments") for t in tools]))}\n')
        return lark, ((OPEN,) if choice == "auto" else ())

    def calls(self, text, start, done):
        return objects_between(text, start, done, (CLOSE, OPEN))  # {...} </tool_call> <tool_call> {...}
