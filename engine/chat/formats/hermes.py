"""Hermes-style tool calls (Qwen 2.5, Qwen 3, Hermes 2 Pro and 3), for models whose chat template
renders tools itself between `<tools>` tags: each call is a JSON object
`{"name": ..., "arguments": {...}}` inside `<tool_call>` ... `</tool_call>`, several one after
another. (In Qwen's vocabularies both tags are tokens of their own.) With tool_choice "auto" the
grammar is lazy: it applies once the model writes `<tool_call>`."""
from __future__ import annotations

from .base import MAX_PARALLEL_CALLS, ToolFormat, any_of, call_schema, json_rule, objects_between

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class Hermes(ToolFormat):
    name = "hermes"
    tag = OPEN

    def matches(self, template_source: str) -> bool:
        return OPEN in template_source

    def grammar(self, tools, choice, parallel, after_result, special):
        # the tags as the tokens they are where the vocabulary has them (llguidance: <name>), else as text
        open_, close = (tag if tag in special else f'"{tag}"' for tag in (OPEN, CLOSE))
        calls = f'call ("\\n" call){{0,{MAX_PARALLEL_CALLS - 1}}}' if parallel else "call"
        lark = (f'start: {calls}\ncall: {open_} "\\n" json "\\n" {close}\n'
                f'json: {json_rule(any_of([call_schema(t, "arguments") for t in tools]))}\n')
        return lark, ((OPEN,) if choice == "auto" else ())

    def calls(self, text, start, done):
        return objects_between(text, start, done, (CLOSE, OPEN))  # {...} </tool_call> <tool_call> {...}
