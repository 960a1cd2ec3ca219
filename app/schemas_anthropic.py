"""Anthropic's Messages API requests, under Anthropic's names (its responses and stream events are
the anthropic package's own types). Unknown fields are ignored, as elsewhere."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .schemas import KEEP_ALIVE, tunable


class AnthropicModel(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class TextBlockParam(AnthropicModel):
    type: Literal["text"]
    text: str


class ToolUseBlockParam(AnthropicModel):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict


class ToolResultBlockParam(AnthropicModel):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlockParam] | None = None
    is_error: bool | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(b.text for b in self.content or [])


ContentBlockParam = Annotated[TextBlockParam | ToolUseBlockParam | ToolResultBlockParam, Field(discriminator="type")]


class MessageParam(AnthropicModel):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlockParam]


class ToolParam(AnthropicModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    input_schema: dict


class ToolChoice(AnthropicModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class CountTokensRequest(AnthropicModel):
    model: str
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlockParam] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None

    def system_text(self) -> str | None:
        return self.system if not isinstance(self.system, list) else "\n".join(b.text for b in self.system)


class MessageCreateRequest(CountTokensRequest):
    keep_alive: float | None = KEEP_ALIVE
    max_tokens: int = tunable("max_tokens", ...)
    metadata: dict | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = tunable("top_k")
    top_p: float | None = tunable("top_p")
    seed: int | None = Field(None, ge=-(2**63), lt=2**64, description="llamba's: a seed for sampling, as OpenAI's")
