"""The FastAPI application: `create_app(settings)` and `serve(args)` behind `llamba serve`."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from llamba import __version__
from llamba.engine import hub, python_heap
from llamba.engine.c_heap import limit_malloc_arenas
from llamba.engine.kernels import isa
from llamba.engine.loader import set_threads

from . import chat_page, errors
from .limits import MB, BodyLimit
from .metrics import Metrics
from .model_pool import ModelPool, check_kv_budget
from .response_store import ResponseStore
from .routes import routes
from .settings import ConfigError, ModelSettings, Settings

log = logging.getLogger("llamba")


@dataclass
class ServerState:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    ready: bool = False
    failed: str | None = None  # why a configured model could not be loaded: the server then exits 2
    draining: bool = False  # after SIGTERM: running requests finish, new ones get 503
    created: int = field(default_factory=lambda: int(time.time()))
    # names this build and the kernels it runs (and their activation width, which changes the
    # results), as OpenAI's system_fingerprint names a backend
    fingerprint: str = field(default_factory=lambda: f"llamba-{__version__}-{isa.PATH}-a{isa.ACTIVATION_BITS}")

    def __post_init__(self):
        self.responses = ResponseStore(self.settings.stored_responses)
        self.pool = ModelPool(self.settings, self.metrics)


def create_app(settings: Settings) -> FastAPI:
    st = ServerState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threads = set_threads(settings.threads)
        cpu = isa.describe()
        log.info("CPU %s (%s): %s kernels, %s-bit activations, %d threads", cpu["cpu"], cpu["cpu_name"],
                 cpu["kernels"], cpu["activation_bits"], threads)

        async def load():  # the configured models; a models folder's load when asked for
            try:
                for model in settings.models:
                    await st.pool.runner(model.id)
            except Exception as e:  # a server that can never serve them stops (GracefulServer.on_tick)
                st.failed = e.info.message if isinstance(e, errors.OpenAIError) else f"{type(e).__name__}: {e}"
                return
            st.ready = True
        tasks = [asyncio.create_task(load()), asyncio.create_task(st.pool.watch_idle())]
        yield  # (/health answers 503 until the configured models are in and compiled)
        for task in tasks:
            task.cancel()
        await st.pool.close()

    app = FastAPI(title="llamba", description="OpenAI-compatible server for GGUF language models, on numba",
                  routes=list(routes), lifespan=lifespan)  # (a copy: the app adds its /docs to it)
    app.state.llamba = st
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    errors.install(app)
    if settings.webui:
        chat_page.install(app)
    describe_models(app, st.pool.ids)
    return app


def describe_models(app: FastAPI, model_ids: list[str]) -> None:
    """The OpenAPI document names the models this server serves as the values `model` may take
    (so that generated clients and API fuzzers send requests that reach a model)."""
    fastapi_document = app.openapi

    def document() -> dict:
        if app.openapi_schema is None:
            schemas = fastapi_document()["components"]["schemas"]
            if not model_ids:  # (a models folder still empty: any name)
                return app.openapi_schema
            for name in ("ChatCompletionRequest", "CompletionRequest", "ResponseCreateRequest", "MessageCreateRequest",
                         "CountTokensRequest", "EmbeddingRequest", "ModelRequest"):
                schemas[name]["properties"]["model"]["enum"] = model_ids
        return app.openapi_schema
    app.openapi = document


class GracefulServer(uvicorn.Server):
    """uvicorn, draining on SIGTERM (as `docker stop` and Kubernetes send it): new requests get
    503 and /health says "draining" while running ones finish, for up to `shutdown_grace` seconds;
    then whatever still runs ends at its next token (finish_reason "length", then [DONE]) and the
    server exits 0. A second signal, or SIGINT, stops it at once as uvicorn does. A configured model
    that cannot be loaded stops it too (serve() then exits 2)."""

    def __init__(self, config: uvicorn.Config, st: ServerState):
        super().__init__(config)
        self.st = st
        self.loop: asyncio.AbstractEventLoop | None = None
        self.drain_task: asyncio.Task | None = None

    async def serve(self, sockets=None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def on_tick(self, counter: int) -> bool:
        return self.st.failed is not None or await super().on_tick(counter)

    def handle_exit(self, sig: int, frame) -> None:
        if sig != signal.SIGTERM or self.st.draining or self.loop is None:
            return super().handle_exit(sig, frame)
        self.st.draining = True
        self.loop.call_soon_threadsafe(self._start_draining)

    def _start_draining(self) -> None:
        self.drain_task = self.loop.create_task(self.drain())  # (kept: the loop holds tasks weakly)

    async def drain(self) -> None:
        runners = [m.runner for m in self.st.pool.loaded()]
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
                     queue_size=args.queue_size, parallel=args.parallel, api_keys=args.api_keys,
                     models_dir=args.models_dir, max_loaded_models=args.max_loaded_models,
                     idle_unload=args.idle_unload, webui=args.webui,
                     speculative=args.speculative)
    if args.model:
        path = args.model
        if path.startswith("hf://"):  # pulled into the models folder first (nothing new if it is there)
            try:
                path = str(hub.pull(*hub.parse_hf_url(path), hub.models_dir(args.models_dir)))
            except hub.HubError as e:
                print(f"llamba: error: {e}", file=sys.stderr)
                return 2
        overrides["models"] = [ModelSettings(id=args.model_id or Path(path).stem, path=path)]
    elif (args.models_dir or os.environ.get("LLAMBA_MODELS_DIR")) and not args.config and "LLAMBA_MODELS" not in os.environ:
        overrides["models"] = []  # a models folder and no model named: the packaged default is not added
    try:
        settings = Settings.load(args.config, **overrides)
        kv_bytes = check_kv_budget(settings)
    except ConfigError as e:
        print(f"llamba: error: {e}", file=sys.stderr)
        return 2
    limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.info("KV caches, full: %.0f MB", kv_bytes / MB)
    app = create_app(settings)
    python_heap.resume()
    server = GracefulServer(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info"),
                            app.state.llamba)
    server.run()
    if server.st.failed:
        print(f"llamba: error: {server.st.failed}", file=sys.stderr)
        return 2
    return 0
