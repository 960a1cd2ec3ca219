"""OpenAI's request and response types, under OpenAI's names, fields in OpenAI's order; the
extensions llama-server and vLLM accept come last in each request. Unknown request fields are
ignored, as OpenAI does (kept in `model_extra`, so the routes can log them). Response fields that
OpenAI leaves out when empty are left out (`OMIT_NONE`), not sent as null.
`sampling_params` is the one bridge into the engine."""
from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from llamba.engine.sampling import TUNABLE, SamplingParams


def sampling_params(defaults: SamplingParams, request: BaseModel, max_tokens: int | None) -> SamplingParams:
    """The model's `defaults`, with every sampling field `request` has and gives (engine/sampling.py's
    TUNABLE, OpenAI's penalties, seed, logit bias); max_tokens the request's own (None: the model
    runner's default, which may stop at the context's end). The one bridge into the engine."""
    names = (*TUNABLE, "presence_penalty", "frequency_penalty", "seed", "logit_bias")
    given = {name: getattr(request, name, None) for name in names if name != "max_tokens"}
    return replace(defaults, **{k: v for k, v in given.items() if v is not None}, max_tokens=max_tokens)


class OpenAIModel(BaseModel):
    # NaN and infinities are not JSON, though Python's parser reads them: refused, not sampled
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


def _omit_none(default=None):
    return Field(default, exclude_if=lambda v: v is None)


OMIT_NONE = _omit_none()
# llamba's, with Ollama's name: how long the model stays loaded unused after this request (seconds;
# 0 unloads it once idle, negative keeps it loaded); only a models folder's models unload
KEEP_ALIVE = Field(None, description="seconds the model stays loaded unused after this request (Ollama's)")


def tunable(name: str, default=None):
    """A sampling field a request may set, bounded as engine/sampling.py's TUNABLE says."""
    return Field(default, **TUNABLE[name][1])


# --- requests -----------------------------------------------------------------------------------
class ContentPart(OpenAIModel):
    type: Literal["text"]
    text: str


class FunctionCall(OpenAIModel):
    name: str
    arguments: str  # a JSON object, as a string


class ToolCall(OpenAIModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "ipython"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's
    tool_call_id: str | None = None           # a tool result's

    @model_validator(mode="after")
    def _content_where_required(self):
        # OpenAI refuses null content except from an assistant (whose tool calls may be all it says)
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content (a string or a list of text parts), got null")
        return self

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    def for_template(self) -> dict:
        """As chat templates read a message: only the keys it has."""
        message = {"role": self.role, "content": self.text()}
        if self.name is not None:
            message["name"] = self.name
        if self.tool_calls:
            message["tool_calls"] = [c.model_dump(include={"id", "type", "function"}) for c in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class FunctionDefinition(OpenAIModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_.-]+$")
    description: str | None = None
    parameters: dict | None = None  # a JSON schema of an object
    strict: bool | None = None


class Tool(OpenAIModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(OpenAIModel):
    name: str


class NamedToolChoice(OpenAIModel):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(OpenAIModel):
    name: str = "response"
    description: str | None = None
    schema_: dict | bool | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(OpenAIModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(OpenAIModel):
    include_usage: bool = False


class SamplingRequest(OpenAIModel):
    """Fields shared by chat and text completions. Sampling fields left out (or null) take the
    model's defaults (engine/sampling.py, the model file, the server's configuration)."""
    model: str
    keep_alive: float | None = KEEP_ALIVE
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[int, Annotated[float, Field(ge=-100, le=100)]] | None = Field(None, max_length=1024)
    max_tokens: int | None = tunable("max_tokens")
    n: int = Field(1, ge=1, le=16)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = tunable("temperature")
    top_p: float | None = tunable("top_p")
    user: str | None = None
    # --8<-- extensions (llama-server, vLLM)
    top_k: int | None = tunable("top_k")
    min_p: float | None = tunable("min_p")
    repeat_penalty: float | None = tunable("repeat_penalty")
    ignore_eos: bool = False
    return_tokens_as_token_ids: bool = False

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, stop):
        if isinstance(stop, list) and len(stop) > 4:  # OpenAI's limit
            raise ValueError(f"at most 4 stop sequences, got {len(stop)}")
        return stop

    def n_logprobs(self) -> int | None:
        return None

    def output_limit(self) -> int | None:
        return self.max_tokens

    def to_sampling_params(self, defaults: SamplingParams) -> SamplingParams:
        params = sampling_params(defaults, self, self.output_limit())
        if self.stop is not None:
            params = replace(params, stop=[self.stop] if isinstance(self.stop, str) else self.stop)
        return replace(params, ignore_eos=self.ignore_eos, logprobs=self.n_logprobs())


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    max_completion_tokens: int | None = tunable("max_tokens")
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    tools: list[Tool] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # --8<-- extensions (llama-server): a raw JSON schema, or a Lark / GBNF grammar
    json_schema: dict | None = None
    grammar: str | None = None

    def n_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)
    max_tokens: int | None = tunable("max_tokens", 16)  # OpenAI's default for completions
    suffix: str | None = None
    # --8<-- extensions (llama-server): a raw JSON schema, or a Lark / GBNF grammar
    json_schema: dict | None = None
    grammar: str | None = None

    def n_logprobs(self) -> int | None:
        return self.logprobs


# --- the Responses API (requests; its responses and stream events are the openai package's own) --
class InputText(OpenAIModel):
    type: Literal["input_text", "output_text", "text"]
    text: str


class InputMessage(OpenAIModel):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionCallItem(OpenAIModel):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str  # a JSON object, as a string
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(OpenAIModel):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputText]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


class FunctionToolDefinition(FunctionDefinition):
    """A function tool as the Responses API writes it: flat, the function's fields beside `type`."""
    type: Literal["function"]


class FunctionToolChoice(NamedFunction):
    type: Literal["function"]


class TextFormat(OpenAIModel):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict | bool | None = Field(None, alias="schema")
    strict: bool | None = None


class TextConfig(OpenAIModel):
    format: TextFormat | None = None


class ResponseCreateRequest(OpenAIModel):
    model: str
    keep_alive: float | None = KEEP_ALIVE
    input: str | list[InputMessage | FunctionCallItem | FunctionCallOutputItem]
    instructions: str | None = None
    max_output_tokens: int | None = tunable("max_tokens")
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
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
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)

    def tool_choice_value(self):
        choice = self.tool_choice or ("auto" if self.tools else "none")
        return choice.model_dump() if isinstance(choice, FunctionToolChoice) else choice

    def text_config(self) -> dict:
        return self.text.model_dump(by_alias=True, exclude_none=True) if self.text and self.text.format else \
            {"format": {"type": "text"}}



# --- embeddings -------------------------------------------------------------------------------------
class EmbeddingRequest(OpenAIModel):
    model: str
    keep_alive: float | None = KEEP_ALIVE
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = Field(None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

class ModelRequest(OpenAIModel):
    model: str


class TokenizeRequest(OpenAIModel):
    content: str
    add_special: bool = False
    parse_special: bool = True
    model: str | None = None


class DetokenizeRequest(OpenAIModel):
    tokens: list[int]
    model: str | None = None


# --- responses ----------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = PromptTokensDetails()


class GenerationResponse(BaseModel):
    """The fields every generation response and chunk opens with, in OpenAI's order (a subclass
    sets `object`, which keeps its place)."""
    id: str
    object: str
    created: int
    model: str
    system_fingerprint: str


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatCompletionTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[ChatCompletionTokenLogprob] | None


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = OMIT_NONE


class Choice(BaseModel):
    index: int
    message: ChatCompletionMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None


class ChatCompletion(GenerationResponse):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[Choice]
    usage: Usage


class FunctionCallDelta(BaseModel):
    name: str | None = OMIT_NONE
    arguments: str | None = OMIT_NONE


class ToolCallDelta(BaseModel):
    """A streamed piece of a tool call: the first carries its id, type and name."""
    index: int
    id: str | None = OMIT_NONE
    type: Literal["function"] | None = OMIT_NONE
    function: FunctionCallDelta


class ChoiceDelta(BaseModel):
    role: Literal["assistant"] | None = OMIT_NONE
    content: str | None = OMIT_NONE
    tool_calls: list[ToolCallDelta] | None = OMIT_NONE


class ChunkChoice(BaseModel):
    index: int
    delta: ChoiceDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(GenerationResponse):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]
    usage: Usage | None = OMIT_NONE


class CompletionLogprobs(BaseModel):
    tokens: list[str] = []
    token_logprobs: list[float] = []
    top_logprobs: list[dict[str, float]] = []
    text_offset: list[int] = []


class CompletionChoice(BaseModel):
    """(Alike in shape to a chat `Choice` and a `Completion` to a `ChatCompletion`, as in
    OpenAI's API: the fields differ in type, so each stays written out.)"""
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None


class Completion(GenerationResponse):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: Usage | None = OMIT_NONE


# What a request that leaves the sampling fields out gets (max_tokens None: until the context is full).
SamplingDefaults = create_model("SamplingDefaults", **{name: (kind | None if name == "max_tokens" else kind, ...)
                                                       for name, (kind, _) in TUNABLE.items()})


class ModelMeta(BaseModel):
    """llamba's additions to OpenAI's model object (as llama-server's /props reports them); a
    model not loaded has what its file's header says (its own context length, its size)."""
    loaded: bool
    context_length: int | None = None         # tokens per request (KV cache), capped by the model's own
    size_bytes: int | None = OMIT_NONE        # the file's, on disk
    error: str | None = OMIT_NONE             # why its file cannot be read
    parallel: int | None = OMIT_NONE          # requests generated together
    sampling_defaults: SamplingDefaults | None = OMIT_NONE


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llamba"
    meta: ModelMeta | None = OMIT_NONE


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo
