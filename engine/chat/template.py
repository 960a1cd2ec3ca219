"""Chat prompts from the model's own jinja template (`tokenizer.chat_template`).

A template inside a downloaded model file is untrusted code, so it runs in jinja2's immutable
sandbox. It gets what Hugging Face's and llama.cpp's renderers provide: `messages`, `tools`,
`add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception` and `strftime_now`, and a
`tojson` that writes plain JSON (jinja's own escapes HTML).
"""
from __future__ import annotations

import json
from datetime import datetime

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import InvalidRequest

# For files without a template: ChatML, as llama.cpp's (common/chat.cpp) and so llama-server's.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TemplateError(InvalidRequest):
    """The template failed to render (a syntax error, or it raised on these messages)."""

    def __init__(self, message: str):
        super().__init__(message, param="messages")


def _raise_exception(message: str):
    raise TemplateError(message)


def _tojson(value, indent=None, ensure_ascii=False, separators=None, sort_keys=False):
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, separators=separators,
                      sort_keys=sort_keys)


class ChatTemplate:
    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "",
                 strip_bos: bool = True):
        """`strip_bos`: the tokenizer adds BOS itself, so a BOS the template writes is removed."""
        self.source = source or CHATML_TEMPLATE
        self.bos_token, self.eos_token, self.strip_bos = bos_token, eos_token, strip_bos
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        try:
            self._template = env.from_string(self.source)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"chat template has a syntax error at line {e.lineno}: {e.message}") from None

    def render(self, messages: list[dict], add_generation_prompt: bool = True,
               tools: list[dict] | None = None, now: datetime | None = None, extra: dict | None = None) -> str:
        """The prompt text (without a leading BOS when `strip_bos`, as llama.cpp renders it);
        `extra`: more variables for the template (a request's chat_template_kwargs: enable_thinking...)."""
        clock = now or datetime.now()
        try:
            text = self._template.render(
                **(extra or {}), messages=messages, tools=tools, add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token,
                strftime_now=lambda fmt: clock.strftime(fmt))
        except TemplateError:
            raise
        except jinja2.TemplateError as e:
            raise TemplateError(f"chat template failed: {e}") from None
        if self.strip_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token):]
        return text
