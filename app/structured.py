"""Structured output and tools, as OpenAI's API asks for them: what the chat template gets, the
grammar the output must follow, and how the output is read back (engine/grammar.py and
engine/tool_calls.py do the work).

- `response_format`: `text` (free), `json_object` (any JSON object), `json_schema` (that schema,
  strict or not); llama-server's extensions: a raw `json_schema`, or a Lark / GBNF `grammar`.
- `tools` with `tool_choice` "auto" (the default when tools are given), "required" or a named
  function; "none" leaves the tools out of the prompt and parses nothing. `parallel_tool_calls`
  allows several calls in one answer.
"""
from __future__ import annotations

from dataclasses import dataclass

from llamba.engine import tool_calls
from llamba.engine.errors import InvalidRequest
from llamba.engine.grammar import json_schema_grammar, lark_grammar
from llamba.engine.loader import LoadedModel
from . import schemas as s


@dataclass
class ChatPlan:
    messages: list[dict]                 # for the chat template
    tools: list[dict] | None             # for the chat template (templates that render tools)
    grammar: str | None                  # an llguidance grammar, or None for free text
    grammar_param: str = "grammar"       # the request field the grammar comes from
    triggers: tuple[str, ...] = ()       # lazy grammar: applies once the output starts so
    tool_format: str | None = None       # "llama3" or "generic" when calls are read from the output


def output_grammar(body: s.ChatCompletionRequest | s.CompletionRequest) -> tuple[str | None, str]:
    """The grammar of `response_format` (chat), `json_schema` or `grammar` (both endpoints), and
    the field it comes from (named by the error if it cannot be compiled)."""
    fmt = getattr(body, "response_format", None)
    if fmt is not None and fmt.type == "json_object":
        return json_schema_grammar({"type": "object"}), "response_format"
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise InvalidRequest("response_format json_schema needs a `json_schema.schema`", param="response_format")
        return json_schema_grammar(fmt.json_schema.schema_), "response_format"
    if body.json_schema is not None:
        return json_schema_grammar(body.json_schema, param="json_schema"), "json_schema"
    if body.grammar is not None:
        return lark_grammar(body.grammar), "grammar"
    return None, "grammar"


def plan_chat(body: s.ChatCompletionRequest, loaded: LoadedModel) -> ChatPlan:
    tools = [t.model_dump(exclude_none=True) for t in body.tools or []]
    choice = body.tool_choice or ("auto" if tools else "none")
    if not tools or choice == "none":
        if isinstance(choice, s.NamedToolChoice) or choice == "required":
            raise InvalidRequest("tool_choice asks for a tool call but no tools are given", param="tool_choice")
        messages = [m.for_template() for m in body.messages]
        return ChatPlan([tool_calls.history_message("none", m) for m in messages], None, *output_grammar(body))
    fmt = tool_calls.tool_format(loaded.template.source)
    if isinstance(choice, s.NamedToolChoice):
        tools = [t for t in tools if t["function"]["name"] == choice.function.name]
        if not tools:
            raise InvalidRequest(f"tool_choice names {choice.function.name!r}, which is not among the tools",
                                 param="tool_choice")
        choice = "named"
    tool_calls.check_tools(tools)
    grammar, triggers = tool_calls.grammar(fmt, tools, choice, body.parallel_tool_calls,
                                           python_tag=tool_calls.PYTHON_TAG in loaded.tokenizer.special)
    messages = [tool_calls.history_message(fmt, m.for_template()) for m in body.messages]
    if fmt == "generic":  # the template knows nothing of tools: a system message says what to write
        instructions = tool_calls.generic_system_message(tools, choice)
        if messages and messages[0]["role"] == "system":
            instructions["content"] = messages[0]["content"] + "\n\n" + instructions["content"]
            messages = messages[1:]
        messages = [instructions, *messages]
    return ChatPlan(messages, tools if fmt == "llama3" else None, lark_grammar(grammar, param="tools"), "tools",
                    triggers, fmt)


def tool_call_message(text: str, tool_format: str | None) -> s.ChatCompletionMessage:
    """The assistant's message: its tool calls (content null when there is none) or its text."""
    if tool_format is None:
        return s.ChatCompletionMessage(content=text)
    content, calls = tool_calls.parse(tool_format, text)
    if not calls:
        return s.ChatCompletionMessage(content=content)
    return s.ChatCompletionMessage(content=None, tool_calls=[
        s.ToolCall(id=c.id, function=s.FunctionCall(name=c.name, arguments=c.json_arguments())) for c in calls])
