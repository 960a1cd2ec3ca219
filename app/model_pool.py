"""The models a server serves, and which of them are loaded: the configured ones, and with a
models folder every GGUF file in it, loaded when a request first names it, unloaded when idle or
to make room (least recently used first), as Ollama's keep_alive and llama-server's router mode do.

Each model's runner (engine/scheduler.py) is built in a worker thread, so loading never blocks
the event loop or another model's steps; concurrent first requests for one model wait on one
load. A model with running or queued requests is never unloaded. Decisions are taken on the
event loop, between a route's `await runner(...)` and its job's submission there is no await, so
a model handed to a route cannot be unloaded before its job is queued.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from llamba.engine import python_heap
from llamba.engine.c_heap import release_freed_memory
from llamba.engine.gguf_file import SPLIT_NAME, GGUFError, GGUFFile, split_paths
from llamba.engine.config import ModelConfig
from llamba.engine.kv_cache import KVCache, check_type
from llamba.engine.loader import LoadedModel, model_file
from llamba.engine.scheduler import ModelRunner
from llamba.engine.warmup import Warmup

from .errors import OpenAIError
from .limits import MB, available_memory
from .metrics import Metrics
from .settings import ConfigError, ModelSettings, Settings

log = logging.getLogger("llamba")


@dataclass
class Model:
    settings: ModelSettings
    runner: ModelRunner | None = None
    loading: asyncio.Task | None = None
    last_used: float = field(default_factory=time.monotonic)
    keep_alive: float | None = None  # a request's override of the idle timeout (seconds)
    _config: tuple | None = None     # ((mtime, size), ModelConfig) of the file's header

    @property
    def id(self) -> str:
        return self.settings.id

    @property
    def path(self) -> Path:
        return model_file(self.settings.path)

    def size(self) -> int:
        """Bytes on disk (all the parts of a split model)."""
        return sum(p.stat().st_size for p in split_paths(self.path))

    def config(self) -> ModelConfig:
        """The hyper-parameters from the file's header (read again only if the file changes)."""
        stat = self.path.stat()
        if self._config is None or self._config[0] != (stat.st_mtime_ns, stat.st_size):
            self._config = ((stat.st_mtime_ns, stat.st_size), ModelConfig.from_gguf(GGUFFile(self.path)))
        return self._config[1]

    def footprint(self, settings: Settings) -> tuple[int, int]:
        """(bytes of its file, bytes of its KV pool full: `parallel` whole contexts), from the
        header: what loading it takes, at start-up (check_kv_budget) and on load (ModelPool)."""
        config = self.config()
        return self.size(), KVCache.size(config, config.context(settings.context_length), settings.parallel,
                                         settings.kv_cache_type, max(settings.step_tokens, settings.parallel))

    def header(self) -> dict:
        """Context length and size on disk, from the file's header, without loading it."""
        try:
            return {"context_length": self.config().context_length, "size_bytes": self.size()}
        except (GGUFError, OSError, ValueError) as e:
            return {"error": str(e)}


def folder_models(folder: Path) -> list[ModelSettings]:
    """Every *.gguf under `folder` as a model whose id is its file name without .gguf (the first
    of a split file's parts standing for the whole, named without its part suffix)."""
    found = []
    for path in sorted(folder.rglob("*.gguf")):
        split = SPLIT_NAME.search(path.name)
        if split and int(split.group(1)) != 1:
            continue
        found.append(ModelSettings(id=path.name[:split.start()] if split else path.stem, path=str(path)))
    return found


class ModelPool:
    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.models: dict[str, Model] = {}  # by id and by alias
        self._loading = asyncio.Lock()
        self.memory = available_memory()  # (before any model: what they may take together)
        for m in settings.models:
            self._add(Model(m))
        self.rescan()

    # --- which models there are --------------------------------------------------------------
    def _add(self, model: Model) -> None:
        for name in (model.id, *model.settings.aliases):
            self.models.setdefault(name, model)

    def rescan(self) -> None:
        """Adds the models folder's files not yet known (a file copied in later is found)."""
        if self.settings.models_dir:
            for m in folder_models(Path(self.settings.models_dir)):
                if m.id not in self.models:
                    self._add(Model(m))

    @property
    def ids(self) -> list[str]:
        return list(self.models)

    def distinct(self) -> list[Model]:
        return list({id(m): m for m in self.models.values()}.values())

    def loaded(self) -> list[Model]:
        return [m for m in self.distinct() if m.runner is not None]

    def find(self, name: str) -> Model:
        if name not in self.models:
            self.rescan()
        if name not in self.models:
            raise OpenAIError(404, f"The model '{name}' does not exist.", param="model", code="model_not_found")
        return self.models[name]

    # --- loading and unloading ---------------------------------------------------------------
    async def runner(self, name: str | None, keep_alive: float | None = None) -> ModelRunner:
        """The named model's runner (None: the first model), loading it first if it is not loaded."""
        if name is None and not self.models:
            raise OpenAIError(404, "No model is served yet: name one.", param="model", code="model_not_found")
        model = self.find(name) if name is not None else self.distinct()[0]
        model.last_used = time.monotonic()
        if keep_alive is not None:
            model.keep_alive = keep_alive
        while model.runner is None:
            if model.loading is None:
                model.loading = asyncio.create_task(self._load(model))
            task = model.loading
            try:
                await asyncio.shield(task)
            finally:
                if model.loading is task and task.done():
                    model.loading = None
        model.last_used = time.monotonic()
        return model.runner

    async def _load(self, model: Model) -> None:
        async with self._loading:  # one at a time: two loads would each find room for one
            began = time.perf_counter()
            try:
                await asyncio.to_thread(model.config)  # its header, read off the event loop (once)
                await self._make_room(model)
                model.runner = await asyncio.to_thread(build_runner, self.settings, model, self.metrics)
                model.last_used = time.monotonic()  # (a load longer than the idle timeout is not idle)
            except (GGUFError, OSError, ValueError) as e:  # (the reader's one line, naming the file)
                log.error("model %s: %s", model.id, e)
                raise OpenAIError(400, f"The model '{model.id}' cannot be loaded: {e}", param="model",
                                  code="model_load_failed") from None
        seconds = time.perf_counter() - began
        self.metrics.model_loaded(model.id, seconds, model.runner.cache.block_size, model.runner.cache.n_blocks)
        log.info("model %s loaded in %.1f s", model.id, seconds)

    def _fits(self, model: Model, others: list[Model]) -> bool:
        """Within `max_loaded_models`, and the files and KV pools of `others` and `model` within
        the memory there was before any loaded (the KV pools within `kv_cache_limit_mb` too)."""
        if self.settings.max_loaded_models and len(others) >= self.settings.max_loaded_models:
            return False
        sizes = [m.footprint(self.settings) for m in (*others, model)]
        kv_limit = self.settings.kv_cache_limit_mb
        return (sum(f + kv for f, kv in sizes) <= self.memory and
                (kv_limit is None or sum(kv for _, kv in sizes) <= kv_limit * MB))

    async def _make_room(self, model: Model) -> None:
        """Unloads the least recently used idle models until `model` fits; waits while the
        loaded ones are busy; 503 if it could not fit even alone."""
        if not self._fits(model, []):
            files, kv = model.footprint(self.settings)
            raise OpenAIError(503, f"The model '{model.id}' needs {(files + kv) / MB:,.0f} MB ({kv / MB:,.0f} MB of "
                              f"it KV cache), more than this server has for models ({self.memory / MB:,.0f} MB, "
                              "kv_cache_limit_mb); lower parallel or context_length.", type="server_error",
                              headers={"Retry-After": "60"})
        while not self._fits(model, others := [m for m in self.loaded() if m is not model]):
            idle = sorted((m for m in others if m.runner.idle), key=lambda m: m.last_used)
            if idle:
                await self.unload(idle[0], "to make room for " + model.id)
            else:
                await asyncio.sleep(0.05)

    async def unload(self, model: Model, why: str) -> None:
        runner, model.runner = model.runner, None
        if runner is None:
            return
        await asyncio.to_thread(runner.close, True)
        del runner
        python_heap.settle(unload=True)  # (the weights' mapping and the KV pool go with the last reference)
        release_freed_memory()
        self.metrics.model_unloaded(model.id)
        log.info("model %s unloaded (%s)", model.id, why)

    async def unload_idle(self) -> None:
        """Unloads every model idle for longer than its keep_alive (else `idle_unload`; 0: never)."""
        if not self.settings.models_dir:
            return  # (configured models alone: loaded at start-up, for good)
        now = time.monotonic()
        for model in self.loaded():
            if model.keep_alive is not None:  # Ollama's: 0 unloads once idle, negative never
                timeout = None if model.keep_alive < 0 else model.keep_alive
            else:
                timeout = self.settings.idle_unload or None
            if timeout is not None and model.runner.idle and now - model.last_used >= timeout:
                await self.unload(model, f"idle for {timeout:g} s")

    async def watch_idle(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self.unload_idle()

    async def close(self) -> None:
        for model in self.loaded():
            await self.unload(model, "shutting down")


def build_runner(settings: Settings, model: Model, metrics: Metrics) -> ModelRunner:
    """A model's file loaded and its runner started, once its kernels are compiled (blocking)."""
    path, m = model.path, model.settings
    # the kernels' helper processes need only the file's header: they start before it loads
    warmup = Warmup(path, settings.kv_cache_type, parts=settings.threads)
    warmup.start()
    loaded = LoadedModel.load(path)
    runner = ModelRunner(loaded, settings.runner_config(), metrics.observer(m.id),
                         replace(loaded.sampling, **m.sampling.given()), warmup)
    runner.ready.wait()
    python_heap.settle()
    log.info("model %s: kernels ready in %.1f s; loaded from %s (context %d, %s KV cache)", m.id,
             runner.compile_seconds, loaded.path, runner.n_ctx, settings.kv_cache_type)
    return runner


def check_kv_budget(settings: Settings) -> int:
    """The bytes the configured models' KV caches take with their pools full (the cache slots keep
    prefixes in what the running ones leave free); ConfigError, with the numbers, if that exceeds
    `kv_cache_limit_mb`, or (when no limit is set) the memory left beside the model files."""
    needed, files, parts = 0, 0, []
    for m in settings.models:
        model = Model(m)
        try:
            config = model.config()
            check_type(config, settings.kv_cache_type)
            file, kv = model.footprint(settings)
        except (GGUFError, OSError) as e:
            raise ConfigError(str(e)) from None
        except ValueError as e:
            raise ConfigError(f"{m.id}: {e}") from None
        needed, files = needed + kv, files + file
        parts.append(f"{m.id}: {settings.parallel} slots x {config.context(settings.context_length)} positions x "
                     f"{config.n_layers} layers, {settings.kv_cache_type} = {kv / MB:,.0f} MB")
    if settings.kv_cache_limit_mb is not None:
        limit, what = settings.kv_cache_limit_mb * MB, "kv_cache_limit_mb"
    else:
        limit, what = available_memory() - files, "the memory available beside the model files"
    if needed > limit:
        raise ConfigError(f"the KV cache needs {needed / MB:,.0f} MB ({'; '.join(parts)}) but {what} is "
                          f"{limit / MB:,.0f} MB: lower parallel or context_length")
    return needed
