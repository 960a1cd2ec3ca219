"""A stand-in for the model runner, for the wire-format tests: no model file, no kernels, answers
in milliseconds. Its tokenizer has one token per byte and its chat template is the Llama 3 one
(which knows nothing of tools: the generic tool format); every choice answers `answer`, a token
per byte, cut at max_tokens. It refuses what the wire tests check the mapping of, with the
engine's own errors."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

from llamba.engine.chat import ChatTemplate
from llamba.engine.errors import InvalidRequest
from llamba.engine.generate import TokenEvent
from llamba.engine.sampling import SamplingParams
from llamba.engine.job import Job, QueueFull


class ByteTokenizer:
    special: dict[str, int] = {}
    stop_ids = frozenset()

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        return list(text.encode())

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return bytes([token_id])


@dataclass
class FakeLoaded:
    tokenizer: ByteTokenizer = field(default_factory=ByteTokenizer)
    template: ChatTemplate = field(default_factory=lambda: ChatTemplate(None))
    model: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(check_tokens=lambda ids: None))

    def chat_prompt_ids(self, messages: list[dict], tools: list[dict] | None = None, now=None, extra=None) -> list[int]:
        return self.tokenizer.encode(self.template.render(messages, tools=tools, now=now, extra=extra))


class FakeRunner:
    def __init__(self, answer: str = "Paris.", n_ctx: int = 512, parallel: int = 4):
        self.answer, self.n_ctx, self.parallel = answer, n_ctx, parallel
        self.loaded = FakeLoaded()
        self.defaults = SamplingParams(max_tokens=256)
        self.queue_full = False
        self.jobs: list[Job] = []  # what the app submitted

    def submit(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> Job:
        if not prompts or not all(prompts):
            raise InvalidRequest("The prompt is empty.", param="prompt")
        if params.max_tokens is None:
            params = replace(params, max_tokens=self.defaults.max_tokens)
        elif max(map(len, prompts)) + params.max_tokens > self.n_ctx:
            raise InvalidRequest("too long for the context", param="max_tokens", code="context_length_exceeded")
        if len(prompts) * n > self.parallel:
            raise InvalidRequest("too many choices", param="n")
        if self.queue_full:
            raise QueueFull("the queue is full")
        job = Job(prompts, params, n, asyncio.get_running_loop())
        self.jobs.append(job)
        return job

    async def stream(self, job: Job):
        answer = self.answer.encode()
        tokens = answer[:job.params.max_tokens]
        for index in range(job.choices):
            for k, token in enumerate(tokens):
                last = k == len(tokens) - 1
                finish = ("stop" if len(tokens) == len(answer) else "length") if last else None
                logprobs = job.params.logprobs
                yield TokenEvent(token, chr(token), logprob=None if logprobs is None else -0.5,
                                 top_logprobs=[(token, -0.5)] * (logprobs or 0), finish_reason=finish, index=index)

    def close(self) -> None:
        pass
