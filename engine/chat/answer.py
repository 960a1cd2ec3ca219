"""A chat answer read as it is generated: its text, or its tool calls, part by part, so that every
API can stream a call's arguments as the model writes them (OpenAI's tool-call deltas, the
Responses API's function_call_arguments.delta, Anthropic's input_json_delta) and build the whole
answer from the same reading.

An answer is either one text part or one part per tool call (formats/ describes the formats, and
where each format's calls are in an answer), after a reasoning part where the model thinks first
(Qwen 3's `<think>...</think>`, opened by the answer or already by the prompt). `AnswerReader.push(text)` returns what changed: a part
opened, text added to it (a call's arguments as the JSON text the model wrote), a part closed.
The calls' JSON is read as it grows by json_scan.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

from .formats import ToolCall, ToolFormat
from .json_scan import Node, skip, string_so_far


THINK, THOUGHT = "<think>", "</think>"


@dataclass
class Part:
    index: int                     # among the answer's parts, a reasoning part first
    call: ToolCall | None = None   # None: the text part (or the reasoning)
    text: str = ""                 # the text so far, or the call's arguments' JSON text so far
    closed: bool = False
    cut: bool = False              # a call closed by the answer's end, its JSON unfinished
    reasoning: bool = False        # the model's thinking before its answer


@dataclass(frozen=True)
class Change:
    kind: str                      # "opened", "added" (with `text`) or "closed"
    part: Part                     # the part (as it opened, for "opened")
    text: str = ""


class AnswerReader:
    """Reads an answer in tool format `fmt` (None: plain text) as it grows; `thinking`: "maybe"
    (the answer may open with <think>), "open" (the prompt opened it) or None (then "done" once
    the thinking has ended)."""

    def __init__(self, fmt: ToolFormat | None, thinking: str | None = None):
        self.fmt, self.text, self.parts = fmt, "", []
        self.thinking, self.thought = thinking, ""  # the reasoning's state, and its raw text so far
        self.first = 0                       # the first part after the reasoning
        self.is_text = fmt is None            # the answer is plain text
        self.words = False                   # ... or a generic envelope's words
        self.json_start: int | None = None   # where the calls' JSON begins, once the answer is known to be calls
        self.json_whole = False              # that JSON has ended
        self.malformed = False
        self.done: dict[int, Node] = {}      # the JSON values already whole (see scan)

    def push(self, text: str) -> list[Change]:
        changes = []
        if self.thinking in ("maybe", "open"):
            changes, text = self._think(text)
            if self.thinking in ("maybe", "open"):  # (still thinking, or too soon to tell)
                return changes
        if self.thinking == "done":  # the answer begins at its first non-space, after the thinking
            text = text.lstrip()
            if not text:
                return changes
            self.thinking = None
        self.text += text
        if not self.is_text and self.json_start is None:
            self._decide()
        if self.is_text:
            return changes + self._grow(0, None, self.text)
        if self.json_start is None or self.malformed:
            return changes
        try:
            wanted = self._parts_in_json()
        except ValueError:  # (the grammar rules this out; the answer is then read as text)
            self.malformed = True
            return changes
        return changes + [change for index, (call, so_far, whole) in enumerate(wanted)
                          for change in self._grow(index, call, so_far, whole)]

    def _think(self, text: str) -> tuple[list[Change], str]:
        """The reasoning's changes, and the text after it for the answer ("" while it lasts).
        Its text is trimmed, as llama.cpp trims it, and what may be the start of </think> waits."""
        self.thought += text
        if self.thinking == "maybe":
            start = self.thought.lstrip()
            if THINK.startswith(start) and start != THINK:
                return [], ""  # (too little to tell)
            if not start.startswith(THINK):
                self.thinking, rest = None, self.thought
                return [], rest
            self.thinking, self.thought = "open", start[len(THINK):]
        if not self.first:
            self.parts.append(Part(0, reasoning=True))
            self.first = 1
            changes = [Change("opened", replace(self.parts[0]))]
        else:
            changes = []
        end = self.thought.find(THOUGHT)
        so_far = self.thought if end < 0 else self.thought[:end]
        if end < 0:  # hold back a possible beginning of </think>
            so_far = so_far[:len(so_far) - next((k for k in range(len(THOUGHT) - 1, 0, -1)
                                                 if so_far.endswith(THOUGHT[:k])), 0)]
        changes += self._grow_part(self.parts[0], so_far.strip(), whole=end >= 0)
        if end < 0:
            return changes, ""
        self.thinking = "done"
        return changes, self.thought[end + len(THOUGHT):]

    def finish(self) -> list[Change]:
        """The last changes: an answer that was not calls after all (JSON that ended, or never
        began, without one) becomes its text; an empty answer, or calls cut before a name, one
        empty text part; open parts close, a call's as cut."""
        changes = []
        if self.thinking == "maybe":  # (an answer shorter than <think>)
            self.thinking, self.text = None, self.thought
        elif self.thinking == "open":  # cut while thinking: the reasoning so far, and no answer
            changes += self._grow_part(self.parts[0], self.thought.strip(), whole=True)
        if len(self.parts) == self.first and (self.json_start is None or self.json_whole or self.malformed):
            self.is_text = True
            changes += self._grow(0, None, self.text)
        if len(self.parts) == self.first:
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
            return self.parts[self.first].text, []
        return None, [p.call for p in self.parts if p.call is not None and not p.cut]

    @property
    def reasoning(self) -> str | None:
        """The reasoning's text (after finish), or None where the model did not think."""
        return self.parts[0].text if self.first else None

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
            call = (self.parts[self.first + k].call if self.first + k < len(self.parts)
                    else ToolCall(json.loads(text[name.start:name.end]), {}))
            if node.end is not None:
                so_far = so_far or "{}"
                call.arguments, call.text = json.loads(so_far), so_far
            wanted.append((call, so_far, node.end is not None))
        return wanted

    def _grow(self, index: int, call: ToolCall | None, text: str, whole: bool = False) -> list[Change]:
        """The changes that bring the answer's part `index` (after any reasoning) to `text` (and
        closed, if `whole`)."""
        changes = []
        index += self.first
        if index == len(self.parts):
            self.parts.append(Part(index, call))
            changes.append(Change("opened", replace(self.parts[index])))  # (as it opened: empty)
        return changes + self._grow_part(self.parts[index], text, whole)

    @staticmethod
    def _grow_part(part: Part, text: str, whole: bool) -> list[Change]:
        changes = []
        if len(text) > len(part.text):
            changes.append(Change("added", part, text[len(part.text):]))
            part.text = text
        if whole and not part.closed:
            part.closed = True
            changes.append(Change("closed", part))
        return changes
