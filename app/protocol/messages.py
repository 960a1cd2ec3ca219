"""Anthropic's Messages API: requests, and the answer and its stream events under Anthropic's names
and shapes (`Message`, `TextBlock`, `ToolUseBlock`, `content_block_delta`, ...), written here
rather than imported from the anthropic SDK (its types cost the server seconds of start-up);
tests/app/test_messages_wire.py checks each against the SDK's own. Unknown request fields are
ignored, as elsewhere; None fields are left out of the answer's JSON."""
from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from llamba.engine.chat import ChatRequest
from llamba.engine.errors import InvalidRequest
from llamba.engine.sampling import SamplingParams

from .common import KEEP_ALIVE, APIModel, LogitBias, sampling_params, seed_field, tunable

# the engine's concepts, as this API names them
FIELDS = {"prompt": "messages", "output": "tools", "grammar": "tools"}
TOOL_CHOICES = {"auto": "auto", "any": "required", "tool": "named", "none": "none"}


class TextBlockParam(APIModel):
    type: Literal["text"]
    text: str


class ToolUseBlockParam(APIModel):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict


class ToolResultBlockParam(APIModel):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlockParam] | None = None
    is_error: bool | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(b.text for b in self.content or [])


class ThinkingBlockParam(APIModel):
    """An assistant's thinking, sent back with its tool uses (as clients with thinking on must)."""
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlockParam(APIModel):
    type: Literal["redacted_thinking"]
    data: str


class MediaBlockParam(APIModel):
    """An image or a document: read only to say that this server's models take text alone."""
    type: Literal["image", "document"]
    source: dict | None = None


ContentBlockParam = Annotated[TextBlockParam | ToolUseBlockParam | ToolResultBlockParam | ThinkingBlockParam
                              | RedactedThinkingBlockParam | MediaBlockParam, Field(discriminator="type")]


class MessageParam(APIModel):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlockParam]


class ToolParam(APIModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    input_schema: dict


class ToolChoice(APIModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(APIModel):
    """Whether the model thinks first (a template's enable_thinking; the budget is not kept to)."""
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class CountTokensRequest(APIModel):
    model: str
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlockParam] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None

    def system_text(self) -> str | None:
        return self.system if not isinstance(self.system, list) else "\n".join(b.text for b in self.system)


    def turn(self) -> ChatRequest:
        """This request as the engine's chat turn (sampling aside): the system text, then each message, a user's
        tool results as tool messages before its words, an assistant's tool uses as its calls."""
        messages = [{"role": "system", "content": self.system_text()}] if self.system else []
        names = {}  # tool_use id -> tool name
        for i, m in enumerate(self.messages):
            blocks = [TextBlockParam(type="text", text=m.content)] if isinstance(m.content, str) else m.content
            if media := next((b.type for b in blocks if b.type in ("image", "document")), None):
                raise InvalidRequest(f"messages.{i}: {media} content blocks are not supported: "
                                     f"the model takes text only", param="messages")
            text = "".join(b.text for b in blocks if b.type == "text")
            thinking = "".join(b.thinking for b in blocks if b.type == "thinking")
            calls = [{"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.input}}
                     for b in blocks if b.type == "tool_use"]
            names.update((c["id"], c["function"]["name"]) for c in calls)
            for b in blocks:
                if b.type == "tool_result":
                    messages.append({"role": "tool", "tool_call_id": b.tool_use_id, "name": names.get(b.tool_use_id, ""),
                                     "content": b.text()})
            if text or calls or not any(b.type == "tool_result" for b in blocks):
                messages.append({"role": m.role, "content": text, **({"tool_calls": calls} if calls else {}),
                                 **({"reasoning_content": thinking} if thinking else {})})
        tools = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                    "parameters": t.input_schema}} for t in self.tools or []]
        choice = self.tool_choice
        thinks = {} if self.thinking is None or self.thinking.type == "adaptive" else \
            {"enable_thinking": self.thinking.type == "enabled"}
        return ChatRequest(messages, tools, TOOL_CHOICES[choice.type] if choice else None, choice.name if choice else None,
                           not (choice and choice.disable_parallel_tool_use), template_kwargs=thinks)


class MessageCreateRequest(CountTokensRequest):
    keep_alive: float | None = KEEP_ALIVE
    max_tokens: int = tunable("max_tokens", ...)
    metadata: dict | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = tunable("top_k")
    top_p: float | None = tunable("top_p")
    seed: int | None = seed_field(description="llamba's: a seed for sampling, as OpenAI's")
    logit_bias: LogitBias | None = None

    def chat(self, defaults: SamplingParams) -> ChatRequest:
        return replace(self.turn(), sampling=sampling_params(defaults, self, self.max_tokens,
                                                                stop=self.stop_sequences or []))


# --- the answer ---------------------------------------------------------------------------------
class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict


class ThinkingBlock(BaseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""  # (no signature: nothing here is encrypted or verified)


class Usage(BaseModel):
    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int
    output_tokens: int


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[ThinkingBlock | TextBlock | ToolUseBlock]
    model: str
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"] | None = None
    stop_sequence: str | None = None
    usage: Usage


# --- its stream's events ------------------------------------------------------------------------
class MessageStartEvent(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockEvent(BaseModel):
    """(an event about one block of the content)"""
    index: int


class ContentBlockStartEvent(ContentBlockEvent):
    type: Literal["content_block_start"] = "content_block_start"
    content_block: ThinkingBlock | TextBlock | ToolUseBlock


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJSONDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ThinkingDelta(BaseModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class ContentBlockDeltaEvent(ContentBlockEvent):
    type: Literal["content_block_delta"] = "content_block_delta"
    delta: TextDelta | InputJSONDelta | ThinkingDelta


class ContentBlockStopEvent(ContentBlockEvent):
    type: Literal["content_block_stop"] = "content_block_stop"


class MessageDelta(BaseModel):
    stop_reason: str | None = None
    stop_sequence: str | None = None


class MessageDeltaUsage(BaseModel):
    output_tokens: int


class MessageDeltaEvent(BaseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage


class MessageStopEvent(BaseModel):
    type: Literal["message_stop"] = "message_stop"

