"""One chat turn, for any chat API: a `ChatRequest` (messages, tools, the tool choice, the output
format, sampling) in; its plan out: the prompt's token ids, the grammar the answer must follow and
its lazy triggers, and the reader of the answer as it is generated (`ChatPlan.reader`).

Messages and tools come in the shape chat templates read (Hugging Face's, which OpenAI's chat
completions also use), each API turning its own into it:
- a message: {"role", "content": str, and where they apply "name", "tool_call_id", "tool_calls":
  [{"id", "type": "function", "function": {"name", "arguments": a JSON object, or its text}}]};
- a tool: {"type": "function", "function": {"name", "description", "parameters"}}.
Errors are InvalidRequest naming the engine's concept at fault ("messages", "tools",
"tool_choice", "output"); each API's error table turns those into its own field names.

The tool choice: "auto" (the default when tools are given), "none" (tools left out of the
prompt, nothing parsed), "required", or "named" with `tool_name`. The tool-call format comes from
the model's template (formats/: its grammar, its prompt and how it writes past calls).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import InvalidRequest
from ..grammar import json_schema_grammar, lark_grammar
from ..sampling import SamplingParams
from . import formats
from .answer import THINK, THOUGHT, AnswerReader
from .formats import ToolFormat

if TYPE_CHECKING:
    from ..loader import LoadedModel


@dataclass(frozen=True)
class Output:
    """What the answer must be: JSON following `json_schema`, or text in the language of `lark`
    (a Lark grammar, as llguidance reads it, or llama.cpp's GBNF)."""
    json_schema: dict | bool | None = None
    lark: str | None = None

    def grammar(self) -> str:
        if self.lark is not None:
            return lark_grammar(self.lark, param="output")
        return json_schema_grammar(self.json_schema, param="output")


JSON_OBJECT = Output(json_schema={"type": "object"})


@dataclass
class ChatRequest:
    """A chat turn as every chat API asks for it, in the engine's terms: each API's route builds
    one from its body (app/protocol/), and a new option is a field here."""
    messages: list[dict]
    tools: list[dict] = field(default_factory=list)
    tool_choice: str | None = None       # "auto", "none", "required" or "named"; None: auto with tools
    tool_name: str | None = None         # the named tool
    parallel_tool_calls: bool = True
    output: Output | None = None         # what the answer must be (None: free text)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1                           # answers to the same prompt
    template_kwargs: dict = field(default_factory=dict)  # more variables for the template (enable_thinking)


@dataclass
class ChatPlan:
    prompt_ids: list[int]
    grammar: str | None = None           # an llguidance grammar, or None for free text
    grammar_from: str = "output"         # the concept the grammar comes from: "output" or "tools"
    triggers: tuple[str, ...] = ()       # lazy grammar: applies once the answer starts so
    tool_format: ToolFormat | None = None  # where calls are read from the answer
    thinking: str | None = None          # the model thinks first: "maybe", or "open" (the prompt opened it)

    def reader(self) -> AnswerReader:
        """A reader of the answer as it is generated, part by part (answer.py)."""
        return AnswerReader(self.tool_format, self.thinking)


def plan_chat(loaded: "LoadedModel", request: ChatRequest, now: datetime | None = None) -> ChatPlan:
    messages, tools, output = request.messages, list(request.tools), request.output
    choice, tool_name, parallel_tool_calls = request.tool_choice or ("auto" if tools else "none"), \
        request.tool_name, request.parallel_tool_calls
    if not tools or choice == "none":
        if choice in ("named", "required"):
            raise InvalidRequest("tool_choice asks for a tool call but no tools are given", param="tool_choice")
        history = [formats.NO_TOOLS.history_message(m) for m in messages]
        prompt_ids = loaded.chat_prompt_ids(history, now=now, extra=request.template_kwargs)
        return ChatPlan(prompt_ids, output.grammar() if output else None, thinking=thinking(loaded, prompt_ids))
    if choice == "named":
        tools = [t for t in tools if t["function"]["name"] == tool_name]
        if not tools:
            raise InvalidRequest(f"tool_choice names {tool_name!r}, which is not among the tools", param="tool_choice")
    formats.check_tools(tools)
    fmt = formats.for_template(loaded.template.source)
    after_result = bool(messages) and messages[-1]["role"] == "tool"
    grammar, triggers = fmt.grammar(tools, choice, parallel_tool_calls, after_result, loaded.tokenizer.special)
    history = [fmt.history_message(m) for m in messages]
    prompt_ids = fmt.prompt(loaded, history, tools, choice, after_result, now, request.template_kwargs)
    return ChatPlan(prompt_ids, lark_grammar(grammar, param="tools"), "tools", triggers, fmt,
                    thinking(loaded, prompt_ids))


def thinking(loaded: "LoadedModel", prompt_ids: list[int]) -> str | None:
    """Whether the answer to this prompt may open with the model's thinking (a template that
    writes <think> blocks, Qwen 3's), or starts inside it (the prompt ends with <think>), or not
    (the prompt closed an empty one: enable_thinking false)."""
    if THINK not in (loaded.template.source or ""):
        return None
    end = loaded.tokenizer.decode(prompt_ids[-8:]).rstrip()
    return "open" if end.endswith(THINK) else None if end.endswith(THOUGHT) else "maybe"
