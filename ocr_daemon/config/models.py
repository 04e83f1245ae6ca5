"""The configuration's sections (redis, workers, watches, api, ...) and Config itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ocr_daemon import passwords
from ocr_daemon.config.base import (
    BUILTIN_ENGINES,
    DEFAULT_PATTERNS,
    ENGINE_OPTIONS,
    OutputName,
    PositiveFloat,
    PositiveInt,
    _folder_problem,
    _Model,
)
from ocr_daemon.config.engines import (
    EnginesConfig,
    GeminiConfig,
)
from ocr_daemon.delivery.names import QUEUES, QueueName
from ocr_daemon.engines import plugins

SENTINEL_URL = re.compile(r"^sentinel://[^;/]+(;sentinel://[^;/]+)*(/\d+)?$")


class RedisConfig(_Model):
    # embedded | redis://host:port/db | sentinel://host:port;sentinel://host:port/db
    url: str = "embedded"
    key_prefix: str = "ocrd:"
    master_name: str | None = None  # the Sentinel service name (sentinel:// only)
    sentinel_password: str | None = None  # AUTH for the Sentinels, when they ask for one
    password: str | None = None  # AUTH for the master found through Sentinel

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v == "embedded" or re.match(r"^(redis|rediss|redis\+socket|unix)://", v):
            return v
        if SENTINEL_URL.match(v):
            return v
        raise ValueError("must be 'embedded', a redis://host:port/db URL, or "
                         "sentinel://host:port;sentinel://host:port/db")

    @model_validator(mode="after")
    def _sentinel(self) -> RedisConfig:
        if self.url.startswith("sentinel://") and not self.master_name:
            raise ValueError("redis.url names Sentinels: set redis.master_name too")
        return self


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class WorkersConfig(_Model):
    concurrency: Annotated[int, Field(ge=0)] = 0  # 0: one process per CPU
    pool: Literal["prefork", "threads", "solo"] = "prefork"
    queues: list[QueueName] = list(QUEUES)
    soft_time_limit: PositiveInt = 600
    time_limit: PositiveInt = 660
    max_retries: Annotated[int, Field(ge=0)] = 3
    max_redeliveries: Annotated[int, Field(ge=0)] = 3  # a worker died on it: then it fails
    shutdown_grace: PositiveFloat = 30.0  # stopping: running tasks may finish, then go back
    retry_backoff: PositiveFloat = 2.0
    retry_backoff_max: PositiveFloat = 300.0

    @model_validator(mode="after")
    def _limits(self) -> WorkersConfig:
        if self.time_limit <= self.soft_time_limit:
            raise ValueError("time_limit must be greater than soft_time_limit")
        return self


class MetricsConfig(_Model):
    enabled: bool = False
    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 9464


class WebhookConfig(_Model):
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+")]
    timeout: PositiveFloat = 10.0
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    secret: str | None = None  # HMAC-SHA256 of the body in X-OCR-Daemon-Signature


class ApiConfig(_Model):
    """The HTTP API and web page (`ocr-daemon api`; `run` starts it when enabled)."""

    enabled: bool = False
    listen: Annotated[str, Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.:-]+):[0-9]{1,5}$")] = (
        "127.0.0.1:8080")
    watch: str | None = None  # the watch uploads go to (default: the first)
    max_upload_bytes: PositiveInt = 256 * 1024 * 1024
    engines: list[str] = ["auto", "pdftext", "tesseract"]  # allowed per upload
    tokens: list[Annotated[str, Field(min_length=16)]] = []
    tokens_file: Path | None = None  # one token per line (systemd: a LoadCredential file)
    cors_origins: list[str] = []
    idempotency_ttl: PositiveInt = 24 * 3600  # seconds an Idempotency-Key is remembered

    @field_validator("engines")
    @classmethod
    def _engines(cls, v: list[str], info: ValidationInfo) -> list[str]:
        known = (info.context or {}).get("engine_names", BUILTIN_ENGINES)
        unknown = [e for e in v if e not in known]
        if unknown:
            raise ValueError(f"unknown engine(s) {unknown}; known: {', '.join(known)}")
        return v

    @field_validator("tokens_file")
    @classmethod
    def _tokens_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            return None
        base = (info.context or {}).get("base_dir", Path.cwd())
        return (Path(base) / v.expanduser()).resolve()

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


class WatchConfig(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    root: Path
    engine: str = "auto"  # a built-in engine or one of an engines.plugins module
    engine_options: dict[str, Any] = {}
    chunk_pages: PositiveInt = 10  # OCR and remote engines: pages per chunk (at most)
    # Text-layer pages (pdftext, the first pass of auto) cost about a millisecond each: they
    # are read in chunks of at most this many pages, most documents in one pass.
    text_chunk_pages: PositiveInt = 1000
    chunk_threshold_pages: PositiveInt = 10
    chunk_threshold_bytes: PositiveInt = 5 * 1024 * 1024
    chunks_in_flight: PositiveInt = 20
    on_chunk_failure: Literal["fail", "partial"] = "fail"
    on_success: Literal["archive", "delete"] = "archive"
    patterns: list[str] = DEFAULT_PATTERNS
    ignore: list[str] = []
    recursive: bool = False
    polling: bool = False
    poll_interval: PositiveFloat = 2.0
    settle_seconds: Annotated[float, Field(ge=0)] = 1.0
    settle_checks: PositiveInt = 2
    # A settled file that is not whole by its content (no PDF %%EOF, PNG IEND, ...) waits
    # this long unchanged before it is taken anyway, and then fails as truncated_document.
    incomplete_grace_seconds: Annotated[float, Field(ge=0)] = 120.0
    rescan_interval: PositiveFloat = 60.0
    max_file_bytes: PositiveInt = 1024 * 1024 * 1024
    max_pages: PositiveInt = 10_000
    duplicates: Literal["process", "skip"] = "process"
    duplicates_window: PositiveInt = 30 * 24 * 3600  # seconds a sha256 is remembered for skip
    webhook: WebhookConfig | None = None  # POST of the final progress JSON when a document ends
    # What outbox/ receives: text (<stem>.txt), json (<stem>.json, always: it marks the end)
    # and pdf (<stem><pdf_suffix>: the original pages with an invisible text layer).
    outputs: list[OutputName] = ["text", "json"]
    pdf_suffix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{0,40}\.pdf$")] = ".pdf"
    pdf_max_pages: PositiveInt = 2000  # a document with more pages fails when pdf is asked for
    # Candidate passwords for encrypted PDFs, one a line; readable by the service user only.
    passwords_file: Path | None = None

    @field_validator("root")
    @classmethod
    def _root(cls, v: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir", Path.cwd())
        root = (Path(base) / v.expanduser()).resolve()
        problem = _folder_problem(root, writable=True)
        if problem:
            raise ValueError(problem)
        return root

    @field_validator("engine")
    @classmethod
    def _engine(cls, v: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("engine_names", BUILTIN_ENGINES)
        if v not in known:
            raise ValueError(f"unknown engine {v!r}; known: {', '.join(known)} "
                             f"(more come from engines.plugins)")
        return v

    @field_validator("passwords_file")
    @classmethod
    def _passwords_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            return None
        base = (info.context or {}).get("base_dir", Path.cwd())
        path = (Path(base) / v.expanduser()).resolve()
        problem = passwords.check_private(path)
        if problem:
            raise ValueError(f"{path}: {problem}")
        return path

    @field_validator("engine_options")
    @classmethod
    def _options(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("engine", "auto") not in BUILTIN_ENGINES:
            return v  # a plugin's engine checks its own options when it is built
        unknown = sorted(set(v) - ENGINE_OPTIONS)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; allowed: {sorted(ENGINE_OPTIONS)}")
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, v: list[str]) -> list[str]:
        if "json" not in v:
            raise ValueError("must include json (the result JSON marks a document as done)")
        return list(dict.fromkeys(v))

    @property
    def pdf_output(self) -> bool:
        return "pdf" in self.outputs


class Config(_Model):
    redis: RedisConfig = RedisConfig()
    state_dir: Path = Path("state")
    state_ttl: PositiveInt = 3600
    stall_timeout: PositiveFloat = 300.0
    max_document_attempts: PositiveInt = 3
    logging: LoggingConfig = LoggingConfig()
    workers: WorkersConfig = WorkersConfig()
    engines: EnginesConfig = EnginesConfig()
    metrics: MetricsConfig = MetricsConfig()
    api: ApiConfig = ApiConfig()
    watches: Annotated[list[WatchConfig], Field(min_length=1)]
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, v: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir", Path.cwd())
        path = (Path(base) / v.expanduser()).resolve()
        problem = _folder_problem(path, writable=False)
        if problem:
            raise ValueError(problem)
        return path

    @model_validator(mode="before")
    @classmethod
    def _plugin_engines(cls, data: Any, info: ValidationInfo) -> Any:
        """Import engines.plugins first: their engine names are valid in every watch."""
        engines = data.get("engines") if isinstance(data, dict) else None
        modules = engines.get("plugins") if isinstance(engines, dict) else None
        if (isinstance(info.context, dict) and isinstance(modules, list)
                and all(isinstance(m, str) for m in modules)):
            info.context["engine_names"] = (
                *BUILTIN_ENGINES, *plugins.load(modules, BUILTIN_ENGINES))
        return data

    @model_validator(mode="after")
    def _watches_apart(self) -> Config:
        seen: dict[str, int] = {}
        for i, w in enumerate(self.watches):
            if w.name in seen:
                raise ValueError(f"watches[{i}].name: duplicate of watches[{seen[w.name]}].name")
            seen[w.name] = i
        for i, a in enumerate(self.watches):
            for j, b in enumerate(self.watches):
                if i < j and (a.root == b.root or a.root in b.root.parents
                              or b.root in a.root.parents):
                    raise ValueError(f"watches[{j}].root: overlaps watches[{i}].root ({a.root})")
        return self

    @model_validator(mode="after")
    def _api_watch(self) -> Config:
        names = [w.name for w in self.watches]
        if self.api.watch is not None and self.api.watch not in names:
            raise ValueError(f"api.watch: no watch named {self.api.watch!r} ({', '.join(names)})")
        if not 1 <= self.api.port <= 65535:
            raise ValueError("api.listen: the port must be 1-65535")
        return self

    @model_validator(mode="after")
    def _watch_gemini_options(self) -> Config:
        """A watch's own model must take the Gemini thinking settings too."""
        base = self.engines.gemini.model_dump()
        for i, w in enumerate(self.watches):
            options = {k: v for k, v in w.engine_options.items() if k in GeminiConfig.model_fields}
            if w.engine in ("gemini", "auto") and options:
                try:
                    GeminiConfig.model_validate({**base, **options})
                except ValidationError as exc:
                    err = exc.errors()[0]
                    reason = err["msg"].removeprefix("Value error, ")
                    if err["loc"]:
                        reason = f"{err['loc'][0]}: {reason}"
                    if "model" not in options:
                        raise ValueError(f"watches[{i}].engine_options.{reason}") from None
                    raise ValueError(f"watches[{i}].engine_options.model: {options['model']!r} "
                                     f"with engines.gemini.{reason}") from None
        return self

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from (workers are started with it)."""
        return self._source

    def watch(self, name: str) -> WatchConfig:
        for w in self.watches:
            if w.name == name:
                return w
        raise KeyError(name)


