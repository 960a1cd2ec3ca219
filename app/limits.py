"""Limits an operator sets and the server keeps: the size of a request body, and the memory there
is for models (app/model_pool.py checks the KV caches against it, at start-up and on a load)."""
from __future__ import annotations

import os
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_response
from .protocol.common import ErrorInfo

MB = 1 << 20


class BodyLimit:
    """Refuses a request body larger than `limit` bytes with 413, whether it announces its length
    or streams in chunks (counted as they arrive, so it is never held whole)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await error_response(413, self._error(), path=scope["path"])(scope, receive, send)
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # FastAPI answers an HTTPException raised while reading
                raise HTTPException(413, self._error().message)
            return message
        await self.app(scope, counted, send)

    def _error(self) -> ErrorInfo:
        return ErrorInfo(message=f"The request body is larger than this server's limit of {self.limit} bytes.",
                         type="invalid_request_error", code="request_too_large")


def available_memory() -> int:
    """Bytes this process may still take: the cgroup's limit less its use where there is one,
    else the machine's MemAvailable."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        pass
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
