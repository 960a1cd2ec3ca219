"""A chat answer read as it is generated: its text, or its tool calls, part by part, so that every
API can stream a call's arguments as the model writes them (OpenAI's tool-call deltas, the
Responses API's function_call_arguments.delta, Anthropic's input_json_delta) and build the whole
answer from the same reading.

An answer is either one text part or one part per tool call (tools.py describes the formats).
`AnswerReader.push(text)` returns what changed: a part opened, text added to it (a call's
arguments as the JSON text the model wrote), a part closed. The JSON of the calls is scanned
again from its start at each push, skipping the values already whole (`scan`): simpler to trust
than a parser's state carried across pushes, and as cheap where arguments run long.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

from .tools import PYTHON_TAG, ToolCall


@dataclass
class Part:
    index: int
    call: ToolCall | None = None   # None: the text part
    text: str = ""                 # the text so far, or the call's arguments' JSON text so far
    closed: bool = False
    cut: bool = False              # a call closed by the answer's end, its JSON unfinished


@dataclass(frozen=True)
class Change:
    kind: str                      # "opened", "added" (with `text`) or "closed"
    part: Part                     # the part (as it opened, for "opened")
    text: str = ""


@dataclass
class Node:
    """A JSON value in the answer's text: where it starts and ends (None while cut short), and an
    object's values by key or an array's items."""
    start: int
    end: int | None = None
    children: dict[str, Node] | list[Node] = field(default_factory=list)


_SPACE = " \t\n\r"


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _SPACE:
        i += 1
    return i


_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"')  # (possessive: a string cut short fails in one pass)
_SCALAR_END = re.compile(r"[,:}\]\s]")


def scan(text: str, i: int, done: dict[int, Node]) -> Node:
    """The JSON value starting at text[i], as far as the text goes (ValueError where it is not
    JSON). Scalars are only delimited here; a call's arguments are parsed once they are whole.
    `done` holds the values already whole by where they start: the text only grows, so they
    are not scanned again (a long answer costs each push its unfinished path, not its length)."""
    if i in done:
        return done[i]
    node, opening = Node(i), text[i]
    if opening == '"':
        whole = _STRING.match(text, i)
        node.end = whole.end() if whole else None
    elif opening not in "{[":
        end = _SCALAR_END.search(text, i)
        node.end = end.start() if end else None
    else:
        _scan_container(text, node, done)
    if node.end is not None:
        done[i] = node
    return node


def _scan_container(text: str, node: Node, done: dict[int, Node]) -> None:
    is_object = text[node.start] == "{"
    closing = "}" if is_object else "]"
    node.children = {} if is_object else []
    j = _skip(text, node.start + 1)
    if j < len(text) and text[j] == closing:
        node.end = j + 1
        return
    while j < len(text):
        if is_object:
            if text[j] != '"':
                raise ValueError(f"a key expected at {j}")
            key = scan(text, j, done)
            j = _skip(text, key.end) if key.end else len(text)
            if j == len(text):
                return
            if text[j] != ":":
                raise ValueError(f"':' expected at {j}")
            j = _skip(text, j + 1)
            if j == len(text):
                return
        value = scan(text, j, done)
        if is_object:
            node.children[json.loads(text[key.start:key.end])] = value
        else:
            node.children.append(value)
        if value.end is None:
            return
        j = _skip(text, value.end)
        if j < len(text) and text[j] == closing:
            node.end = j + 1
            return
        if j < len(text) and text[j] != ",":
            raise ValueError(f"',' or {closing!r} expected at {j}")
        j = _skip(text, j + 1)


def string_so_far(text: str, node: Node) -> str:
    """A JSON string's value as far as it is written, short of an escape not yet whole."""
    body = text[node.start + 1:node.end - 1 if node.end else len(text)]
    while True:
        try:
            value = json.loads(f'"{body}"')
        except ValueError:
            value = None
        if value is not None and (node.end or not value or not "\ud800" <= value[-1] <= "\udbff"):
            return value
        body = body[:body.rfind("\\")]


class AnswerReader:
    """Reads an answer in `fmt` ("llama3", "generic", or None for plain text) as it grows."""

    def __init__(self, fmt: str | None):
        self.fmt, self.text, self.parts = fmt, "", []
        self.is_text = fmt is None            # the answer is plain text
        self.words = False                   # ... or a generic envelope's words
        self.json_start: int | None = None   # where the calls' JSON begins, once the answer is known to be calls
        self.json_whole = False              # that JSON has ended
        self.malformed = False
        self.done: dict[int, Node] = {}      # the JSON values already whole (see scan)

    def push(self, text: str) -> list[Change]:
        self.text += text
        if not self.is_text and self.json_start is None:
            self._decide()
        if self.is_text:
            return self._grow(0, None, self.text)
        if self.json_start is None or self.malformed:
            return []
        try:
            wanted = self._parts_in_json()
        except ValueError:  # (the grammar rules this out; the answer is then read as text)
            self.malformed = True
            return []
        return [change for index, (call, so_far, whole) in enumerate(wanted)
                for change in self._grow(index, call, so_far, whole)]

    def finish(self) -> list[Change]:
        """The last changes: an answer that was not calls after all (JSON that ended, or never
        began, without one) becomes its text; an empty answer, or calls cut before a name, one
        empty text part; open parts close, a call's as cut."""
        changes = []
        if not self.parts and (self.json_start is None or self.json_whole or self.malformed):
            self.is_text = True
            changes += self._grow(0, None, self.text)
        if not self.parts:
            changes += self._grow(0, None, "")
        for part in self.parts:
            if not part.closed:
                part.closed, part.cut = True, part.call is not None
                changes.append(Change("closed", part))
        return changes

    def result(self) -> tuple[str | None, list[ToolCall]]:
        """After finish: (content, calls) of the whole answer; content None where the answer is
        calls or their cut beginning, calls only those whose JSON closed (a call cut by
        max_tokens is reported as neither a call nor text)."""
        if self.malformed:
            return self.text, []
        if self.is_text or self.words:
            return self.parts[0].text, []
        return None, [p.call for p in self.parts if p.call is not None and not p.cut]

    def _decide(self) -> None:
        """Text or calls, once the answer's first characters tell (after `<|python_tag|>` for llama3)."""
        start = _skip(self.text, 0)
        if self.fmt == "llama3":
            if PYTHON_TAG.startswith(self.text[start:]):
                return
            if self.text.startswith(PYTHON_TAG, start):
                start = _skip(self.text, start + len(PYTHON_TAG))
        if start == len(self.text):
            return
        if self.text[start] == "{":
            self.json_start = start
        else:
            self.is_text = True

    def _objects(self) -> tuple[Node | None, list[Node]]:
        """(a generic envelope's words as a string node, or None; the calls' JSON objects so far)."""
        text = self.text
        if self.fmt == "generic":  # one envelope: {"tool_call": ...}, {"tool_calls": [...]} or {"response": "..."}
            envelope = scan(text, self.json_start, self.done)
            self.json_whole = envelope.end is not None
            fields = envelope.children
            if "response" in fields and text[fields["response"].start] == '"':
                return fields["response"], []
            if "tool_calls" in fields:
                return None, list(fields["tool_calls"].children)
            return None, [fields["tool_call"]] if "tool_call" in fields else []
        objects, j = [], self.json_start  # llama3: calls separated by ";"
        while j < len(text):
            node = scan(text, j, self.done)
            objects.append(node)
            if node.end is None:
                break
            j = _skip(text, node.end)
            if j < len(text) and text[j] != ";":
                raise ValueError(f"';' expected at {j}")
            j = _skip(text, j + 1)
        self.json_whole = bool(objects) and objects[-1].end is not None
        return None, objects

    def _parts_in_json(self) -> list[tuple[ToolCall | None, str, bool]]:
        """(call, its arguments' text so far, its JSON closed) for each part the JSON holds so
        far; for a generic envelope's words, (None, the words so far, the string closed)."""
        words, objects = self._objects()
        if words is not None:
            self.words = True
            return [(None, string_so_far(self.text, words), words.end is not None)]
        wanted, text = [], self.text
        for k, node in enumerate(objects):
            name = node.children.get("name") if isinstance(node.children, dict) else None
            if name is None or name.end is None or text[name.start] != '"':
                break
            arguments = node.children.get("arguments", node.children.get("parameters"))
            so_far = "" if arguments is None else text[arguments.start:arguments.end or len(text)]
            call = self.parts[k].call if k < len(self.parts) else ToolCall(json.loads(text[name.start:name.end]), {})
            if node.end is not None:
                so_far = so_far or "{}"
                call.arguments, call.text = json.loads(so_far), so_far
            wanted.append((call, so_far, node.end is not None))
        return wanted

    def _grow(self, index: int, call: ToolCall | None, text: str, whole: bool = False) -> list[Change]:
        """The changes that bring part `index` to `text` (and closed, if `whole`)."""
        changes = []
        if index == len(self.parts):
            self.parts.append(Part(index, call))
            changes.append(Change("opened", replace(self.parts[index])))  # (as it opened: empty)
        part = self.parts[index]
        if len(text) > len(part.text):
            changes.append(Change("added", part, text[len(part.text):]))
            part.text = text
        if whole and not part.closed:
            part.closed = True
            changes.append(Change("closed", part))
        return changes
