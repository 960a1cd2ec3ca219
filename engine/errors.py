"""The engine's one error type for a request it cannot run: the app answers it with OpenAI's 400."""
from __future__ import annotations


class InvalidRequest(ValueError):
    """A request the engine refuses: `param` names the request field at fault (the engine's name:
    "prompt", "logit_bias", "n", ...), `code` OpenAI's error code where one applies."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param, self.code = param, code
