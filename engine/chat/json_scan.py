"""JSON read as it is written: where each value in a growing text starts and ends, without waiting
for the text to be whole (answer.py reads tool calls' arguments with it as the model writes them).
The text is scanned again from its start at each push, skipping the values already whole
(`scan`'s `done`): simpler to trust than a parser's state carried across pushes, and as cheap
where arguments run long."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field


@dataclass
class Node:
    """A JSON value in the answer's text: where it starts and ends (None while cut short), and an
    object's values by key or an array's items."""
    start: int
    end: int | None = None
    children: dict[str, Node] | list[Node] = field(default_factory=list)


_SPACE = " \t\n\r"


def skip(text: str, i: int) -> int:
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
    j = skip(text, node.start + 1)
    if j < len(text) and text[j] == closing:
        node.end = j + 1
        return
    while j < len(text):
        if is_object:
            if text[j] != '"':
                raise ValueError(f"a key expected at {j}")
            key = scan(text, j, done)
            j = skip(text, key.end) if key.end else len(text)
            if j == len(text):
                return
            if text[j] != ":":
                raise ValueError(f"':' expected at {j}")
            j = skip(text, j + 1)
            if j == len(text):
                return
        value = scan(text, j, done)
        if is_object:
            node.children[json.loads(text[key.start:key.end])] = value
        else:
            node.children.append(value)
        if value.end is None:
            return
        j = skip(text, value.end)
        if j < len(text) and text[j] == closing:
            node.end = j + 1
            return
        if j < len(text) and text[j] != ",":
            raise ValueError(f"',' or {closing!r} expected at {j}")
        j = skip(text, j + 1)


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
