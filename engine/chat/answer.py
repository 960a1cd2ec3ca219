"""A chat answer read as it is generated: its text, or its tool calls, part by part, so that every
API can stream a call's arguments as the model writes them (OpenAI's tool-call deltas, the
Responses API's function_call_arguments.delta, Anthropic's input_json_delta) and build the whole
answer from the same reading.

An answer is either one text part or one part per tool call (formats/ describes the formats, and
where each format's calls are in an answer). `AnswerReader.push(text)` returns what changed: a part
opened, text added to it (a call's arguments as the JSON text the model wrote), a part closed.
The calls' JSON is read as it grows by json_scan.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

from .formats import ToolCall, ToolFormat
from .json_scan import Node, skip, string_so_far


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


class AnswerReader:
    """Reads an answer in tool format `fmt` (None: plain text) as it grows."""

    def __init__(self, fmt: ToolFormat | None):
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
        """Text or calls, once the answer's first characters tell (after a prefix the format allows)."""
        start = self.fmt.calls_start(self.text, skip(self.text, 0))
        if start is None:
            return
        if self.text[start] == "{":
            self.json_start = start
        else:
            self.is_text = True

    def _parts_in_json(self) -> list[tuple[ToolCall | None, str, bool]]:
        """(call, its arguments' text so far, its JSON closed) for each part the JSON holds so
        far; for a generic envelope's words, (None, the words so far, the string closed)."""
        words, objects, self.json_whole = self.fmt.calls(self.text, self.json_start, self.done)
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
