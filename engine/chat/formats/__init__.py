"""The tool-call formats, one class per format (base.py says what a format implements), chosen by
the model's chat template as llama.cpp's common/chat.cpp chooses its handlers: the first whose
`matches` takes the template, the generic format last. A new family's format is one new file here
and its place in FORMATS."""
from __future__ import annotations

from .base import ToolCall, ToolFormat, check_tools, closed
from .generic import Generic
from .hermes import Hermes
from .llama3 import PYTHON_TAG, Llama3
from .mistral import Mistral

FORMATS: dict[str, ToolFormat] = {f.name: f for f in (Llama3(), Hermes(), Mistral(), Generic())}  # in the order they are tried
NO_TOOLS = ToolFormat()  # (a chat without tools: past calls' arguments as objects, nothing else)


def for_template(template_source: str | None) -> ToolFormat:
    return next(f for f in FORMATS.values() if f.matches(template_source or ""))


__all__ = ["FORMATS", "NO_TOOLS", "PYTHON_TAG", "ToolCall", "ToolFormat", "check_tools", "closed", "for_template"]
