"""OpenAI's Responses API: the request, and the answer and its stream events under the names and
in the shapes of OpenAI's reference (`Response`, `ResponseOutputMessage`, `ResponseFunctionToolCall`,
`response.output_text.delta`, ...), written here rather than imported from the openai SDK, whose
types cost the server ~2 s of start-up; tests/app/test_responses_wire.py checks each against the
SDK's own. Fields that are None are left out of the JSON."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from llamba.engine.chat import JSON_OBJECT, ChatRequest, Output
from llamba.engine.errors import InvalidRequest
from llamba.engine.sampling import SamplingParams

from .common import KEEP_ALIVE, APIModel, LogitBias, sampling_params, seed_field, tunable
from .completions import FunctionDefinition, NamedFunction

# the engine's concepts, as this API names them
FIELDS = {"prompt": "input", "messages": "input", "max_tokens": "max_output_tokens", "output": "text.format"}


# --- the request --------------------------------------------------------------------------------
class InputText(APIModel):
    type: Literal["input_text", "output_text", "text"]
    text: str


class InputMessage(APIModel):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionCallItem(APIModel):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str  # a JSON object, as a string
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(APIModel):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputText]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


class ReasoningText(APIModel):
    type: Literal["reasoning_text", "summary_text"]
    text: str


class ReasoningItem(APIModel):
    """A past answer's reasoning, given back: its text goes to the template with the next
    assistant message (as Qwen 3's reads it)."""
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[ReasoningText] = []
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    status: str | None = None

    def text(self) -> str:
        return "".join(p.text for p in self.content or [])


class ReasoningConfig(APIModel):
    """How much the model reasons: effort "none" turns a thinking model's thinking off (the
    template's enable_thinking); the other efforts leave it on."""
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


class FunctionToolDefinition(FunctionDefinition):
    """A function tool as the Responses API writes it: flat, the function's fields beside `type`."""
    type: Literal["function"]


class FunctionToolChoice(NamedFunction):
    type: Literal["function"]


class TextFormat(APIModel):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict | bool | None = Field(None, alias="schema")
    strict: bool | None = None


class TextConfig(APIModel):
    format: TextFormat | None = None


class ResponseCreateRequest(APIModel):
    model: str
    keep_alive: float | None = KEEP_ALIVE
    input: str | list[InputMessage | FunctionCallItem | FunctionCallOutputItem | ReasoningItem]
    instructions: str | None = None
    max_output_tokens: int | None = tunable("max_tokens")
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: ReasoningConfig | None = None
    store: bool = True
    stream: bool = False
    temperature: float | None = tunable("temperature")
    text: TextConfig | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionToolChoice | None = None
    tools: list[FunctionToolDefinition] | None = None
    top_p: float | None = tunable("top_p")
    user: str | None = None
    # --8<-- extensions (llama-server, vLLM)
    top_k: int | None = tunable("top_k")
    min_p: float | None = tunable("min_p")
    repeat_penalty: float | None = tunable("repeat_penalty")
    seed: int | None = seed_field()
    logit_bias: LogitBias | None = None

    def tool_choice_value(self):
        choice = self.tool_choice or ("auto" if self.tools else "none")
        return choice.model_dump() if isinstance(choice, FunctionToolChoice) else choice

    def text_config(self) -> dict:
        return self.text.model_dump(by_alias=True, exclude_none=True) if self.text and self.text.format else \
            {"format": {"type": "text"}}

    def output(self) -> Output | None:
        fmt = self.text.format if self.text else None
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return JSON_OBJECT
        if fmt.schema_ is None:
            raise InvalidRequest("text.format of type json_schema needs a `schema`", param="text.format")
        return Output(json_schema=fmt.schema_)

    def chat(self, defaults: SamplingParams, history: list[dict]) -> ChatRequest:
        """This request as the engine's chat turn, after `history` (the input items and what a
        previous response holds, as app/serving/responses.py reads them)."""
        named = isinstance(self.tool_choice, FunctionToolChoice)
        tools = [{"type": "function", "function": t.model_dump(include={"name", "description", "parameters"}, exclude_none=True)}
                 for t in self.tools or []]
        instructions = [{"role": "system", "content": self.instructions}] if self.instructions else []
        return ChatRequest(instructions + history, tools, "named" if named else self.tool_choice,
                           self.tool_choice.name if named else None, self.parallel_tool_calls, self.output(),
                           sampling_params(defaults, self, self.max_output_tokens),
                           template_kwargs={"enable_thinking": False} if self.reasoning and self.reasoning.effort == "none"
                           else {})



# --- the answer ---------------------------------------------------------------------------------
class Answer(BaseModel):
    """(the answer's types: sent with None fields left out)"""


class ResponseOutputText(Answer):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list = []


class ResponseOutputMessage(Answer):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[ResponseOutputText]


class ResponseFunctionToolCall(Answer):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]


class ResponseReasoningText(Answer):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ResponseReasoningItem(Answer):
    """The model's thinking before its answer (Qwen 3's <think>), as its text."""
    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list = []
    content: list[ResponseReasoningText]
    status: Literal["in_progress", "completed", "incomplete"]


OutputItem = ResponseReasoningItem | ResponseOutputMessage | ResponseFunctionToolCall


class InputTokensDetails(Answer):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(Answer):
    reasoning_tokens: int = 0


class ResponseUsage(Answer):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int


class IncompleteDetails(Answer):
    reason: Literal["max_output_tokens"]


class FunctionTool(Answer):
    type: Literal["function"] = "function"
    name: str
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class Response(Answer):
    id: str
    object: Literal["response"] = "response"
    created_at: float
    completed_at: float | None = None
    status: Literal["in_progress", "completed", "incomplete"]
    incomplete_details: IncompleteDetails | None = None
    model: str
    output: list[OutputItem] = []
    usage: ResponseUsage | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool
    previous_response_id: str | None = None
    store: bool
    temperature: float | None = None
    top_p: float | None = None
    text: dict
    tool_choice: str | dict
    tools: list[FunctionTool]

    @property
    def output_text(self) -> str:
        return "".join(part.text for item in self.output if item.type == "message" for part in item.content)


# --- its stream's events, each numbered in order (sequence_number) ------------------------------
class ResponseStreamEvent(Answer):
    type: str
    sequence_number: int = 0


class ResponseLifecycleEvent(ResponseStreamEvent):
    """response.created, .in_progress, .completed and .incomplete"""
    response: Response


class ResponseOutputItemEvent(ResponseStreamEvent):
    """response.output_item.added and .done"""
    output_index: int
    item: OutputItem


class ResponseItemEvent(ResponseStreamEvent):
    """(an event about one output item's content)"""
    item_id: str
    output_index: int


class ResponseContentPartEvent(ResponseItemEvent):
    """response.content_part.added and .done"""
    content_index: int = 0
    part: ResponseOutputText


class ResponseTextEvent(ResponseItemEvent):
    content_index: int = 0
    logprobs: list = []


class ResponseTextDeltaEvent(ResponseTextEvent):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    delta: str


class ResponseTextDoneEvent(ResponseTextEvent):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    text: str


class ResponseFunctionCallArgumentsDeltaEvent(ResponseItemEvent):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    delta: str


class ResponseFunctionCallArgumentsDoneEvent(ResponseItemEvent):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    name: str
    arguments: str


class ResponseReasoningTextDeltaEvent(ResponseItemEvent):
    type: Literal["response.reasoning_text.delta"] = "response.reasoning_text.delta"
    content_index: int = 0
    delta: str


class ResponseReasoningTextDoneEvent(ResponseItemEvent):
    type: Literal["response.reasoning_text.done"] = "response.reasoning_text.done"
    content_index: int = 0
    text: str
