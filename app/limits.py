"""Limits an operator sets and the server keeps: the size of a request body, and the memory the
KV caches may take (checked at start-up, before anything is allocated); and the C heap kept
small, so that a model unloaded gives its memory back."""
from __future__ import annotations

import os
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from llamba.engine.config import LlamaConfig
from llamba.engine.gguf_file import GGUFError, GGUFFile
from llamba.engine.loader import default_model_path
from llamba.engine.kv_cache import KVCache
from .errors import error_response
from .protocol.common import ErrorInfo
from .settings import ConfigError, Settings

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


def kv_pool_size(config: LlamaConfig, settings: Settings) -> tuple[int, int]:
    """(positions per slot, bytes) of a model's KV pool when full: `parallel` whole contexts."""
    n_ctx = min(settings.context_length, config.context_length)
    return n_ctx, KVCache.size(config, n_ctx, settings.parallel, settings.kv_cache_type)


def check_kv_budget(settings: Settings) -> int:
    """The bytes every model's KV cache takes when its pool is full (blocks for `parallel` whole
    contexts; the cache slots keep prefixes in what the running ones leave free); ConfigError,
    with the numbers, if that exceeds `kv_cache_limit_mb`, or (when no limit is set) the memory
    left beside the model files."""
    slots = settings.parallel
    needed, files, parts = 0, 0, []
    for m in settings.models:
        path = Path(m.path) if m.path else default_model_path()
        try:
            file = GGUFFile(path)
            config = LlamaConfig.from_gguf(file)
        except GGUFError as e:
            raise ConfigError(str(e)) from None
        try:
            KVCache.check_type(config, settings.kv_cache_type)
        except ValueError as e:
            raise ConfigError(f"{m.id}: {e}") from None
        n_ctx, size = kv_pool_size(config, settings)
        needed += size
        files += file.size
        parts.append(f"{m.id}: {slots} slots x {n_ctx} positions x {config.n_layers} layers, {settings.kv_cache_type} = {size / MB:,.0f} MB")
    if settings.kv_cache_limit_mb is not None:
        limit, what = settings.kv_cache_limit_mb * MB, "kv_cache_limit_mb"
    else:
        limit, what = available_memory() - files, "the memory available beside the model files"
    if needed > limit:
        raise ConfigError(f"the KV cache needs {needed / MB:,.0f} MB ({'; '.join(parts)}) but {what} is "
                          f"{limit / MB:,.0f} MB: lower parallel or context_length")
    return needed
