"""Configuration: YAML file plus environment overrides, validated with key paths in every error.

The face of `base` (names and limits), `engines` (engine settings), `models` (the sections
and Config) and `loading` (load, parse, overrides, redacted)."""

from __future__ import annotations

from ocr_daemon.config.base import (
    BUILTIN_ENGINES,
    CONFIG_ENV,
    DEFAULT_PATTERNS,
    ENGINE_OPTIONS,
    OVERRIDE_PREFIX,
    OutputName,
    PositiveFloat,
    PositiveInt,
    _folder_problem,
    _Model,
)
from ocr_daemon.config.engines import (
    DEFAULT_GEMINI_MODEL,
    EnginesConfig,
    GeminiConfig,
    PdftextConfig,
    TesseractConfig,
    ThinkingLevel,
    gemini_generation,
    thinking_levels,
)
from ocr_daemon.config.loading import (
    _format_loc,
    _problems,
    _set_path,
    apply_env_overrides,
    load,
    mask_url,
    parse,
    redacted,
)
from ocr_daemon.config.models import (
    SENTINEL_URL,
    ApiConfig,
    Config,
    LoggingConfig,
    MetricsConfig,
    RedisConfig,
    WatchConfig,
    WebhookConfig,
    WorkersConfig,
)

__all__ = [
    "BUILTIN_ENGINES",
    "CONFIG_ENV",
    "DEFAULT_GEMINI_MODEL",
    "DEFAULT_PATTERNS",
    "ENGINE_OPTIONS",
    "OVERRIDE_PREFIX",
    "SENTINEL_URL",
    "ApiConfig",
    "Config",
    "EnginesConfig",
    "GeminiConfig",
    "LoggingConfig",
    "MetricsConfig",
    "OutputName",
    "PdftextConfig",
    "PositiveFloat",
    "PositiveInt",
    "RedisConfig",
    "TesseractConfig",
    "ThinkingLevel",
    "WatchConfig",
    "WebhookConfig",
    "WorkersConfig",
    "_Model",
    "_folder_problem",
    "_format_loc",
    "_problems",
    "_set_path",
    "apply_env_overrides",
    "gemini_generation",
    "load",
    "mask_url",
    "parse",
    "redacted",
    "thinking_levels",
]
