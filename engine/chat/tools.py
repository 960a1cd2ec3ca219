"""Tool calls: the grammar a call must follow, and the calls read back out of the output.

Two formats, as llama.cpp's chat handlers name them:
- llama3: models whose chat template renders tools (Llama 3.1 / 3.2): a call is
  `{"name": ..., "parameters": {...}}`, after an optional `<|python_tag|>`, several separated by
  `;`. The template puts the tools and the tool results into the prompt itself.
- generic: any other template (SmolLM2's): the server asks, in a system message, for a JSON
  envelope — `{"tool_call": {"name", "arguments"}}` (or `{"tool_calls": [...]}` when calls may be
  parallel), or `{"response": "..."}` when the model may answer in words — and constrains the
  output to it from the first token.

`tool_choice` "auto" lets a llama3 model answer in words: its grammar is lazy, applying only once
the output starts like a call. "required" and a named function constrain from the first token.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from ..errors import InvalidRequest

PYTHON_TAG = "<|python_tag|>"
GENERIC_INSTRUCTIONS = ("Respond in JSON format, either with `tool_call` (a request to call tools) or with "
                        "`response` (a reply to the user's request). The tools you may call are: {tools}")
GENERIC_AFTER_RESULT = " Once a tool has given its result, answer the user in plain words, using it."
GENERIC_REQUIRED = "Respond in JSON format with `tool_call`: a request to call tools. The tools are: {tools}"
_COMPACT = {"x-guidance": {"whitespace_flexible": False}}
MAX_PARALLEL_CALLS = 4


@dataclass
class ToolCall:
    name: str
    arguments: dict
    id: str = ""
    text: str = ""    # the arguments as the model wrote them (what was streamed), where it did

    def __post_init__(self):
        self.id = self.id or f"call_{uuid.uuid4().hex[:24]}"

    def json_arguments(self) -> str:
        return self.text or json.dumps(self.arguments, ensure_ascii=False)


def tool_format(template_source: str | None) -> str:
    """llama3 for templates that render tools as Llama 3.1 does, else generic."""
    source = template_source or ""
    return "llama3" if "<|python_tag|>" in source or ("tools" in source and "ipython" in source) else "generic"


def check_tools(tools: list[dict]) -> list[dict]:
    """OpenAI's tool definitions, checked: each a function with a name and a JSON-schema object
    of parameters (InvalidRequest naming "tools" otherwise)."""
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise InvalidRequest(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}", param="tools")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidRequest(f"tools[{i}].function.name must be a non-empty string", param="tools")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise InvalidRequest(f"tools[{i}].function.parameters must be a JSON schema object", param="tools")
    return tools


def _parameters(tool: dict) -> dict:
    return closed(tool["function"].get("parameters") or {"type": "object", "properties": {}})


# the keys of a JSON schema that hold schemas: one, a list of them, or a mapping of names to them
_ONE, _LIST, _MAPPING = ("items", "not", "if", "then", "else", "additionalItems", "contains"), \
    ("anyOf", "oneOf", "allOf", "prefixItems"), ("properties", "$defs", "definitions", "patternProperties")


def closed(schema):
    """The schema with every object that lists its properties closed to others
    (`additionalProperties: false`) unless it says otherwise, as OpenAI's strict mode and vLLM's
    tool grammar do: left open, a small model fills a call with arguments nobody declared (6 of
    16 forced calls on the default model)."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in _ONE:
            out[key] = closed(value)
        elif key in _LIST and isinstance(value, list):
            out[key] = [closed(v) for v in value]
        elif key in _MAPPING and isinstance(value, dict):
            out[key] = {name: closed(v) for name, v in value.items()}
        else:
            out[key] = value
    if "properties" in out and not {"additionalProperties", "patternProperties"} & out.keys():
        out["additionalProperties"] = False
    return out


def _call_schema(tool: dict, arguments_key: str) -> dict:
    return {"type": "object", "properties": {"name": {"const": tool["function"]["name"]},
                                             arguments_key: _parameters(tool)},
            "required": ["name", arguments_key], "additionalProperties": False}


def _any_of(schemas: list[dict]) -> dict:
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def grammar(fmt: str, tools: list[dict], choice: str | None, parallel: bool,
            python_tag: bool, after_result: bool = False) -> tuple[str, tuple[str, ...]]:
    """The Lark grammar (llguidance's dialect) for calls to `tools` (already narrowed to a named
    choice) and its lazy triggers (none: constrained from the first token). `python_tag`: the
    vocabulary has `<|python_tag|>` (Llama 3.1 and later; 3.0-style vocabularies do not).
    `after_result`: the last message is a tool's result; with choice "auto" the generic format
    then lets the answer be plain words, the envelope applying only if it starts with "{"
    (constrained from the first token, 0 of 16 default-model answers after a result were words:
    10 called the tool again)."""
    if fmt == "llama3":
        call = json.dumps({**_any_of([_call_schema(t, "parameters") for t in tools]), **_COMPACT})
        rule = f'call ("; " call){{0,{MAX_PARALLEL_CALLS - 1}}}' if parallel else "call"
        tag = f"{PYTHON_TAG}? " if python_tag else ""
        lark = f'start: {tag}{rule}\ncall: %json {call}\n'
        return lark, (() if choice != "auto" else (PYTHON_TAG, "{") if python_tag else ("{",))
    one = _any_of([_call_schema(t, "arguments") for t in tools])
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
    return f"start: %json {json.dumps({**calls, **_COMPACT})}\n", ("{",) if choice == "auto" and after_result else ()


def generic_system_message(tools: list[dict], choice: str, after_result: bool = False) -> dict:
    listing = json.dumps([t["function"] for t in tools])
    text = (GENERIC_INSTRUCTIONS if choice == "auto" else GENERIC_REQUIRED).format(tools=listing)
    return {"role": "system", "content": text + (GENERIC_AFTER_RESULT if choice == "auto" and after_result else "")}


def history_message(fmt: str, message: dict) -> dict:
    """A past message as the template wants it: an assistant's tool calls with their arguments
    as objects (InvalidRequest if a call's arguments are not a JSON object), and, for the generic
    format, calls and tool results written as the JSON the model was asked for."""
    message = dict(message)
    calls = message.get("tool_calls")
    if calls:
        parsed = []
        for i, call in enumerate(calls):
            fn = call.get("function") or {}
            try:
                args = json.loads(fn.get("arguments") or "{}") if isinstance(fn.get("arguments"), str) else fn.get("arguments")
            except ValueError:
                args = None
            if not isinstance(args, dict):
                raise InvalidRequest(f"tool_calls[{i}].function.arguments of an assistant message is not a JSON object",
                                     param="messages")
            parsed.append({"id": call.get("id"), "type": "function", "function": {"name": fn.get("name"), "arguments": args}})
        message["tool_calls"] = parsed
        if fmt == "generic":
            envelope = ({"tool_call": {"name": parsed[0]["function"]["name"], "arguments": parsed[0]["function"]["arguments"]}}
                        if len(parsed) == 1 else
                        {"tool_calls": [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in parsed]})
            message = {"role": "assistant", "content": json.dumps(envelope)}
    elif fmt == "generic" and message.get("role") == "tool":
        message = {"role": "tool", "content": json.dumps({"tool_response": {"tool": message.get("name"),
                                                                            "content": message.get("content")}})}
    return message
