"""Every error as its API shapes it: OpenAI's {"error": {"message", "type", "param", "code"}}, and on
Anthropic's paths (/v1/messages) Anthropic's {"type": "error", "error": {"type", "message"}}, its
type named by the status as Anthropic names them."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from llamba.engine.errors import InvalidRequest
from .protocol.common import ErrorInfo, ErrorResponse


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        self.status, self.headers = status, headers
        self.info = ErrorInfo(message=message, type=type, param=param, code=code)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


ANTHROPIC_PATHS = "/v1/messages"
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}


def error_response(status: int, info: ErrorInfo, headers: dict | None = None, path: str = "") -> JSONResponse:
    if path.startswith(ANTHROPIC_PATHS):
        body = {"type": "error", "error": {"type": ANTHROPIC_TYPES.get(status, "api_error"), "message": info.message}}
        return JSONResponse(body, status_code=status, headers=headers)
    return JSONResponse(ErrorResponse(error=info).model_dump(), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON.", None
    return (f"Invalid value for '{param}': {first.get('msg')}" if param else first.get("msg", "Invalid request")), param


def install(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError):
        return error_response(exc.status, exc.info, exc.headers, request.url.path)

    @app.exception_handler(InvalidRequest)
    async def invalid_request(request: Request, exc: InvalidRequest):  # (routes name the param where they can)
        return error_response(400, bad_request(str(exc), param=exc.param, code=exc.code).info, path=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(400, ErrorInfo(message=message, type="invalid_request_error", param=param),
                              path=request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, ErrorInfo(message=str(exc.detail), type=kind), exc.headers,
                              request.url.path)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        return error_response(500, ErrorInfo(message=f"internal error: {exc}", type="server_error"),
                              path=request.url.path)
