"""What every tool-call format shares: a call, the checks on OpenAI's tool definitions, the JSON
schema of a call's arguments (closed to the declared ones), and `ToolFormat`, the hooks a format
implements: its grammar, how tools and past calls reach the prompt, and where its calls are in an
answer (for answer.py's reader)."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ...errors import InvalidRequest
from ..json_scan import Node, scan, skip

if TYPE_CHECKING:
    from ...loader import LoadedModel

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


def call_schema(tool: dict, arguments_key: str) -> dict:
    """A call to `tool` as a JSON object: its name, and its arguments under `arguments_key`."""
    parameters = closed(tool["function"].get("parameters") or {"type": "object", "properties": {}})
    return {"type": "object", "properties": {"name": {"const": tool["function"]["name"]}, arguments_key: parameters},
            "required": ["name", arguments_key], "additionalProperties": False}


def any_of(schemas: list[dict]) -> dict:
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def repeated(call: str, separator: str, parallel: bool) -> str:
    """Lark for one call, or with `parallel` up to MAX_PARALLEL_CALLS separated by `separator` (a Lark item)."""
    return f'{call} ({separator} {call}){{0,{MAX_PARALLEL_CALLS - 1}}}' if parallel else call


def token_or_text(tag: str, special: dict[str, int]) -> str:
    """Lark for `tag`: the special token it is where the vocabulary has one (llguidance: <name>), else its text."""
    return tag if tag in special else f'"{tag}"'


def json_rule(schema: dict) -> str:
    """llguidance's Lark for JSON following `schema`, written compactly (no free whitespace)."""
    return f"%json {json.dumps({**schema, **_COMPACT})}"


class ToolFormat:
    """How a family of models is asked for tool calls and writes them. The defaults are those of a
    template that renders tools itself; a format overrides what differs. `grammar`, `prompt` and
    `history_message` are the planner's (planner.py); `calls_start` and `calls` the reader's
    (answer.py)."""
    name = "none"
    tag = ""  # text that opens the calls, where the format has one

    def matches(self, template_source: str) -> bool:
        """Whether a model with this chat template writes calls in this format."""
        return False

    def grammar(self, tools: list[dict], choice: str, parallel: bool, after_result: bool,
                special: dict[str, int]) -> tuple[str, tuple[str, ...]]:
        """The Lark grammar (llguidance's dialect) for calls to `tools` (already narrowed to a named
        choice) and its lazy triggers (none: constrained from the first token). `special`: the
        vocabulary's special tokens; `after_result`: the last message is a tool's result."""
        raise NotImplementedError

    def prompt(self, loaded: "LoadedModel", history: list[dict], tools: list[dict], choice: str,
               after_result: bool, now: datetime | None, extra: dict | None = None) -> list[int]:
        """The prompt's token ids: the template given the tools."""
        return loaded.chat_prompt_ids(history, tools=tools, now=now, extra=extra)

    def history_message(self, message: dict) -> dict:
        """A past message as the template wants it: an assistant's tool calls with their arguments
        as objects (InvalidRequest if a call's arguments are not a JSON object)."""
        message = dict(message)
        if message.get("tool_calls"):
            message["tool_calls"] = [parsed_call(i, call) for i, call in enumerate(message["tool_calls"])]
        return message

    def calls_start(self, text: str, start: int) -> int | None:
        """Where the calls' JSON would begin in an answer whose first non-space character is at
        `start`, after the format's tag if it is there (the reader then looks for a "{"), or None
        until the text tells."""
        if self.tag and self.tag.startswith(text[start:]):  # (the tag, or its beginning: not yet known)
            return None
        if self.tag and text.startswith(self.tag, start):
            start = skip(text, start + len(self.tag))
        return start if start < len(text) else None

    def calls(self, text: str, start: int, done: dict[int, Node]) -> tuple[Node | None, list[Node], bool]:
        """(an envelope's words as a string node, or None; the calls' JSON objects so far; whether
        the JSON has ended) of the calls' JSON beginning at `start` (json_scan.scan with `done`)."""
        raise NotImplementedError


def objects_between(text: str, start: int, done: dict[int, Node], separators: tuple[str, ...], end: str = ""):
    """ToolFormat.calls for calls written as JSON objects one after another with `separators`
    (each text in turn, spaces around them) between them, and `end` after the last where the
    format closes them (a list's "]"): (None, the objects so far, whether the last one is whole).
    ValueError where something else stands between them."""
    objects, j = [], start
    while j < len(text):
        node = scan(text, j, done)
        objects.append(node)
        if node.end is None:
            break
        j = skip(text, node.end)
        if end and text.startswith(end, j):
            break
        for separator in separators:
            if not separator.startswith(text[j:j + len(separator)]):
                raise ValueError(f"{separator!r} expected at {j}")
            if j + len(separator) > len(text):  # (the text ends in it, or before it)
                return None, objects, True
            j = skip(text, j + len(separator))
    return None, objects, bool(objects) and objects[-1].end is not None


def parsed_call(i: int, call: dict) -> dict:
    fn = call.get("function") or {}
    try:
        args = json.loads(fn.get("arguments") or "{}") if isinstance(fn.get("arguments"), str) else fn.get("arguments")
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest(f"tool_calls[{i}].function.arguments of an assistant message is not a JSON object",
                             param="messages")
    return {"id": call.get("id"), "type": "function", "function": {"name": fn.get("name"), "arguments": args}}
