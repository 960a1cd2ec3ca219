"""OpenAI's chat completions and (text) completions: requests and answers under OpenAI's names,
fields in OpenAI's order; the extensions llama-server and vLLM accept come last in each request
(after `# --8<--`). Answer fields that OpenAI leaves out when empty are left out (`OMIT_NONE`)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from llamba.engine.chat import JSON_OBJECT, ChatRequest, Output
from llamba.engine.errors import InvalidRequest
from llamba.engine.sampling import SamplingParams

from .common import KEEP_ALIVE, OMIT_NONE, APIModel, LogitBias, sampling_params, seed_field, tunable


# --- requests -----------------------------------------------------------------------------------
class ContentPart(APIModel):
    type: Literal["text", "image_url", "input_audio", "file"]
    text: str = ""  # (the other types are read only to say that the model takes text alone)


class FunctionCall(APIModel):
    name: str
    arguments: str  # a JSON object, as a string


class ToolCall(APIModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(APIModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "ipython"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's
    tool_call_id: str | None = None           # a tool result's
    reasoning_content: str | None = None      # an assistant's thinking (llama-server's, vLLM's, DeepSeek's)

    @model_validator(mode="after")
    def _content_where_required(self):
        # OpenAI refuses null content except from an assistant (whose tool calls may be all it says)
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content (a string or a list of text parts), got null")
        return self

    def text(self) -> str:
        if isinstance(self.content, list):
            if media := next((part.type for part in self.content if part.type != "text"), None):
                raise InvalidRequest(f"{media} content parts are not supported: the model takes text only",
                                     param="messages")
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
        if self.reasoning_content is not None:
            message["reasoning_content"] = self.reasoning_content
        return message


class FunctionDefinition(APIModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_.-]+$")
    description: str | None = None
    parameters: dict | None = None  # a JSON schema of an object
    strict: bool | None = None


class Tool(APIModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(APIModel):
    name: str


class NamedToolChoice(APIModel):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(APIModel):
    name: str = "response"
    description: str | None = None
    schema_: dict | bool | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(APIModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(APIModel):
    include_usage: bool = False


class SamplingRequest(APIModel):
    """Fields shared by chat and text completions. Sampling fields left out (or null) take the
    model's defaults (engine/sampling.py, the model file, the server's configuration)."""
    model: str
    keep_alive: float | None = KEEP_ALIVE
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: LogitBias | None = None
    max_tokens: int | None = tunable("max_tokens")
    n: int = Field(1, ge=1, le=16)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = seed_field()
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
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return sampling_params(defaults, self, self.output_limit(), stop=stop, ignore_eos=self.ignore_eos,
                               logprobs=self.n_logprobs())

    def output(self) -> Output | None:
        """What the answer must be, from llama-server's `json_schema` and `grammar` (both endpoints)."""
        if self.json_schema is not None:
            return Output(json_schema=self.json_schema)
        if self.grammar is not None:
            return Output(lark=self.grammar)
        return None

    def output_field(self) -> str:
        return "json_schema" if self.json_schema is not None else "grammar"


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
    # (vLLM's and llama-server's) more variables for the chat template: {"enable_thinking": false}
    chat_template_kwargs: dict[str, Any] | None = None

    def n_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def output(self) -> Output | None:
        fmt = self.response_format
        if fmt is not None and fmt.type == "json_object":
            return JSON_OBJECT
        if fmt is not None and fmt.type == "json_schema":
            if fmt.json_schema is None or fmt.json_schema.schema_ is None:
                raise InvalidRequest("response_format json_schema needs a `json_schema.schema`", param="response_format")
            return Output(json_schema=fmt.json_schema.schema_)
        return super().output()

    def output_field(self) -> str:
        return "response_format" if self.response_format is not None and self.response_format.type != "text" \
            else super().output_field()

    def chat(self, defaults: SamplingParams) -> ChatRequest:
        """This request as the engine's chat turn."""
        named = isinstance(self.tool_choice, NamedToolChoice)
        return ChatRequest([m.for_template() for m in self.messages], [t.model_dump(exclude_none=True) for t in self.tools or []],
                           "named" if named else self.tool_choice, self.tool_choice.function.name if named else None,
                           self.parallel_tool_calls, self.output(), self.to_sampling_params(defaults), self.n,
                           self.chat_template_kwargs or {})

    def fields(self) -> dict[str, str]:
        """The engine's concepts (engine/chat/planner.py), as this request names them."""
        return {"prompt": "messages", "output": self.output_field(),
                "max_tokens": "max_completion_tokens" if self.max_completion_tokens else "max_tokens"}

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
    # (vLLM's and llama-server's) more variables for the chat template: {"enable_thinking": false}
    chat_template_kwargs: dict[str, Any] | None = None

    def n_logprobs(self) -> int | None:
        return self.logprobs


# --- answers -------------------------------------------------------------------------------------
class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0
    # OpenAI's, for its predicted outputs: here the tokens that speculation drafted from the
    # context (engine/speculation.py) and the model generated too, or did not
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = PromptTokensDetails()
    completion_tokens_details: CompletionTokensDetails = CompletionTokensDetails()


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
    reasoning_content: str | None = OMIT_NONE  # the model's thinking, apart (as llama-server and vLLM)
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
    reasoning_content: str | None = OMIT_NONE
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
