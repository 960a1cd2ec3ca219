"""The FastAPI application: `create_app(settings)` and `serve(args)` behind `llamba serve`."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from llamba import __version__
from llamba.engine.kernels import isa
from llamba.engine.loader import LoadedModel, default_model_path, set_threads
from llamba.engine.warmup import Warmup
from llamba.engine.scheduler import ModelRunner

from . import errors
from .limits import MB, BodyLimit, check_kv_budget
from .metrics import Metrics
from .response_store import ResponseStore
from .routes import router
from .settings import ConfigError, ModelSettings, Settings

log = logging.getLogger("llamba")


@dataclass
class ServerState:
    settings: Settings
    runners: dict[str, ModelRunner] = field(default_factory=dict)  # by id and by alias
    metrics: Metrics = field(default_factory=Metrics)
    ready: bool = False
    draining: bool = False  # after SIGTERM: running requests finish, new ones get 503
    created: int = field(default_factory=lambda: int(time.time()))
    # names this build and the kernels it runs (and their activation width, which changes the
    # results), as OpenAI's system_fingerprint names a backend
    fingerprint: str = field(default_factory=lambda: f"llamba-{__version__}-{isa.PATH}-a{isa.ACTIVATION_BITS}")

    def __post_init__(self):
        self.responses = ResponseStore(self.settings.stored_responses)

    @property
    def model_ids(self) -> list[str]:
        return [i for m in self.settings.models for i in (m.id, *m.aliases)]


def load_runners(settings: Settings, metrics: Metrics) -> dict[str, ModelRunner]:
    threads = set_threads(settings.threads)
    cpu = isa.describe()
    log.info("CPU %s (%s): %s kernels, %s-bit activations, %d threads", cpu["cpu"], cpu["cpu_name"], cpu["kernels"],
             cpu["activation_bits"], threads)
    runners = {}
    for m in settings.models:
        # the kernels' helper processes need only the file's header: they start before it loads
        warmup = Warmup(m.path or default_model_path(), settings.kv_cache_type, parts=threads)
        warmup.start()
        loaded = LoadedModel.load(m.path)
        n_ctx = min(settings.context_length, loaded.model.config.context_length)
        runner = ModelRunner(loaded, n_ctx, settings.queue_size, settings.request_timeout,
                             parallel=settings.parallel, step_tokens=settings.step_tokens,
                             cache_slots=settings.cache_slots, kv_type=settings.kv_cache_type, observer=metrics.observer(m.id),
                             threads=settings.threads, defaults=replace(loaded.sampling, **m.sampling.given()),
                             max_tokens_limit=settings.max_tokens_limit, warmup=warmup)
        runner.ready.wait()
        log.info("model %s: kernels ready in %.1f s", m.id, runner.compile_seconds)
        runners.update(dict.fromkeys((m.id, *m.aliases), runner))
        log.info("model %s loaded from %s (context %d, %s KV cache)", m.id, loaded.path, n_ctx,
                 settings.kv_cache_type)
    return runners


def create_app(settings: Settings) -> FastAPI:
    st = ServerState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async def load():
            st.runners = await asyncio.to_thread(load_runners, settings, st.metrics)
            st.ready = True
        task = asyncio.create_task(load())  # /health answers 503 until the models are in and compiled
        yield
        task.cancel()
        for runner in set(st.runners.values()):
            runner.close()

    app = FastAPI(title="llamba", description="OpenAI-compatible Llama 3.x server on numba", lifespan=lifespan)
    app.state.llamba = st
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    errors.install(app)
    app.include_router(router)
    describe_models(app, st.model_ids)
    return app


def describe_models(app: FastAPI, model_ids: list[str]) -> None:
    """The OpenAPI document names the models this server serves as the values `model` may take
    (so that generated clients and API fuzzers send requests that reach a model)."""
    fastapi_document = app.openapi

    def document() -> dict:
        if app.openapi_schema is None:
            schemas = fastapi_document()["components"]["schemas"]
            for name in ("ChatCompletionRequest", "CompletionRequest", "ResponseCreateRequest", "MessageCreateRequest",
                         "CountTokensRequest", "EmbeddingRequest"):
                schemas[name]["properties"]["model"]["enum"] = model_ids
        return app.openapi_schema
    app.openapi = document


class GracefulServer(uvicorn.Server):
    """uvicorn, draining on SIGTERM (as `docker stop` and Kubernetes send it): new requests get
    503 and /health says "draining" while running ones finish, for up to `shutdown_grace` seconds;
    then whatever still runs ends at its next token (finish_reason "length", then [DONE]) and the
    server exits 0. A second signal, or SIGINT, stops it at once as uvicorn does."""

    def __init__(self, config: uvicorn.Config, st: ServerState):
        super().__init__(config)
        self.st = st
        self.loop: asyncio.AbstractEventLoop | None = None
        self.drain_task: asyncio.Task | None = None

    async def serve(self, sockets=None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame) -> None:
        if sig != signal.SIGTERM or self.st.draining or self.loop is None:
            return super().handle_exit(sig, frame)
        self.st.draining = True
        self.loop.call_soon_threadsafe(self._start_draining)

    def _start_draining(self) -> None:
        self.drain_task = self.loop.create_task(self.drain())  # (kept: the loop holds tasks weakly)

    async def drain(self) -> None:
        runners = set(self.st.runners.values())
        grace = self.st.settings.shutdown_grace
        log.info("SIGTERM: refusing new requests, letting running ones finish (up to %g s)", grace)
        deadline = time.monotonic() + grace
        while not all(r.idle for r in runners) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for runner in runners:
            runner.cut_short()
        while not all(r.idle for r in runners):  # each ends within one step
            await asyncio.sleep(0.05)
        self.should_exit = True


def serve(args) -> int:
    """`llamba serve`: settings from the configuration, the environment and the flags, then uvicorn.
    A configuration that cannot be used is one line on stderr and status 2."""
    overrides = dict(host=args.host, port=args.port, threads=args.threads, context_length=args.ctx,
                     queue_size=args.queue_size, parallel=args.parallel, api_keys=args.api_keys)
    if args.model:
        overrides["models"] = [ModelSettings(id=args.model_id or Path(args.model).stem, path=args.model)]
    try:
        settings = Settings.load(args.config, **overrides)
        kv_bytes = check_kv_budget(settings)
    except ConfigError as e:
        print(f"llamba: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.info("KV caches, full: %.0f MB", kv_bytes / MB)
    app = create_app(settings)
    server = GracefulServer(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info"),
                            app.state.llamba)
    server.run()
    return 0
