"""Llama 3.1 / 3.2's tool calls, for models whose chat template renders tools itself: a call is
`{"name": ..., "parameters": {...}}`, after an optional `<|python_tag|>`, several separated by `;`.
The template puts the tools and the tool results into the prompt. With tool_choice "auto" the
grammar is lazy: the model may answer in words, and the grammar applies once its answer starts
like a call."""
from __future__ import annotations

from .base import ToolFormat, any_of, call_schema, json_rule, objects_between, repeated

PYTHON_TAG = "<|python_tag|>"


class Llama3(ToolFormat):
    name = "llama3"
    tag = PYTHON_TAG

    def matches(self, template_source: str) -> bool:
        return PYTHON_TAG in template_source or ("tools" in template_source and "ipython" in template_source)

    def grammar(self, tools, choice, parallel, after_result, special):
        python_tag = PYTHON_TAG in special  # (Llama 3.1 and later; 3.0-style vocabularies have none)
        tag = f"{PYTHON_TAG}? " if python_tag else ""
        calls = repeated("call", '"; "', parallel)
        lark = f'start: {tag}{calls}\ncall: {json_rule(any_of([call_schema(t, "parameters") for t in tools]))}\n'
        return lark, (() if choice != "auto" else (PYTHON_TAG, "{") if python_tag else ("{",))

    def calls(self, text, start, done):
        return objects_between(text, start, done, (";",))
