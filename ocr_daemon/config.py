"""Configuration: YAML file plus environment overrides, validated with key paths in every error."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ocr_daemon import passwords
from ocr_daemon.delivery.names import QUEUES, QueueName
from ocr_daemon.engines import plugins
from ocr_daemon.errors import ConfigError

CONFIG_ENV = "OCR_DAEMON_CONFIG"
OVERRIDE_PREFIX = "OCR_DAEMON__"
BUILTIN_ENGINES = ("auto", "pdftext", "tesseract", "gemini")  # plus engines.plugins' engines
OutputName = Literal["text", "json", "pdf"]
DEFAULT_PATTERNS = ["*.pdf", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff"]
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]


# The watch keys an engine's settings may take from engine_options (each is a field of at
# least one engine settings model below: tests/test_one_source.py pins it).
ENGINE_OPTIONS = frozenset({"model", "prompt", "languages", "dpi", "psm", "timeout",
                            "max_output_tokens", "mode", "thinking_level", "thinking_budget"})


def _folder_problem(path: Path, *, writable: bool) -> str | None:
    """Why ``path`` is not, and cannot become, a folder (None when it can). Nothing is
    created: validating a configuration has no side effects (``record.layout.create_folders``
    is the explicit step of the commands that need the folders)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        reason = "File exists" if probe == path else "Not a directory"
        return f"not a directory and cannot be created ({reason})"
    if probe != path and not os.access(probe, os.W_OK | os.X_OK):
        return "not a directory and cannot be created (Permission denied)"
    if probe == path and writable and not os.access(path, os.W_OK | os.X_OK):
        return "directory is not writable by this user"
    return None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


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


ThinkingLevel = Literal["minimal", "low", "medium", "high"]
# The default model: Gemini 3.1 Flash-Lite, stable and the cheapest current Gemini that reads
# PDFs and images (gemini-2.5-flash, the old default, is retired on 2026-12-01).
DEFAULT_GEMINI_MODEL = "gemini-3.1-flash-lite"


def gemini_generation(model: str) -> int | None:
    """The major version of a Gemini model id (2 for gemini-2.5-flash), None if not named so."""
    match = re.match(r"^(?:models/)?gemini-(\d+)(?:[.-]|$)", model)
    return int(match.group(1)) if match else None


def thinking_levels(model: str) -> frozenset[str] | None:
    """The thinking levels a model takes: none before Gemini 3, no `minimal` for a Pro model;
    None when the id names no known family (a proxy's alias): the server decides."""
    generation = gemini_generation(model)
    if generation is None:
        return None
    if generation < 3:
        return frozenset()
    if "-pro" in model:
        return frozenset({"low", "medium", "high"})
    return frozenset({"minimal", "low", "medium", "high"})


class GeminiConfig(_Model):
    model: str = DEFAULT_GEMINI_MODEL
    api_key_env: str = "GEMINI_API_KEY"
    api_key_file: Path | None = None
    base_url: str | None = None
    timeout: PositiveFloat = 120.0
    max_output_tokens: PositiveInt = 16384
    # Gemini 2.5 takes a thinking budget in tokens, Gemini 3 a thinking level; set one at
    # most. Neither: 0 for a 2.x model, `minimal` (or `low` for a Pro) for a 3.x model.
    thinking_budget: Annotated[int, Field(ge=-1)] | None = None
    thinking_level: ThinkingLevel | None = None
    requests_per_minute: PositiveInt = 60
    tokens_per_minute: PositiveInt = 1_000_000
    prompt: str | None = None
    rate_window: PositiveInt = 60  # seconds the limiter measures over (quotas scaled to it)
    tokens_per_page: PositiveInt = 258  # input tokens counted per PDF page or image tile
    inline_max_bytes: PositiveInt = 20_000_000  # larger requests use the File API
    max_attempts: PositiveInt = 4  # per request (429, 5xx, timeouts) before a task retry
    retry_backoff: PositiveFloat = 1.0  # first in-process retry after about this long
    max_wait: PositiveFloat = 60.0  # most seconds a chunk waits in-process, all waits added
    refusal_retries: Annotated[int, Field(ge=0, le=5)] = 2  # RECITATION/SAFETY/MAX_TOKENS
    quota_pause: PositiveFloat | None = None  # daily quota spent: null = until it resets
    # Cost estimates (result JSON, status): list prices per million tokens, thinking billed
    # as output; null: tokens are counted, no cost is estimated. The Batch API bills
    # batch_discount of them.
    price_per_million_input: Annotated[float, Field(ge=0)] | None = None
    price_per_million_output: Annotated[float, Field(ge=0)] | None = None
    batch_discount: Annotated[float, Field(gt=0, le=1)] = 0.5
    # The Batch API (half price, results within 24 h): interactive sends every chunk at once;
    # batch collects chunks into batch jobs; auto uses batch while more than
    # batch_threshold_pages pages wait for Gemini (a backlog), interactive otherwise.
    mode: Literal["interactive", "batch", "auto"] = "interactive"
    batch_threshold_pages: PositiveInt = 200
    batch_collect_seconds: Annotated[float, Field(ge=0)] = 30.0  # staged chunks wait this
    # long for others before a job is sent (or until batch_max_requests are staged)
    batch_max_requests: PositiveInt = 500  # chunk requests per job
    batch_inline_max_bytes: PositiveInt = 20_000_000  # larger jobs go as a JSONL file
    batch_poll_interval: PositiveFloat = 30.0  # first seconds between polls of a job ...
    batch_poll_max: PositiveFloat = 600.0  # ... growing with its age up to this
    batch_fallback: Literal["interactive", "fail"] = "interactive"  # a job failed/expired

    @model_validator(mode="after")
    def _thinking(self) -> GeminiConfig:
        if self.thinking_budget is not None and self.thinking_level is not None:
            raise ValueError("thinking_level: set thinking_level (Gemini 3) or thinking_budget "
                             "(Gemini 2.5), not both")
        levels = thinking_levels(self.model)
        if self.thinking_level is not None and levels is not None \
                and self.thinking_level not in levels:
            takes = (f"takes {sorted(levels)}" if levels
                     else "takes thinking_budget, not a thinking level")
            raise ValueError(f"thinking_level: {self.thinking_level!r} is not a level model "
                             f"{self.model} takes (it {takes})")
        return self

    def thinking(self) -> tuple[int | None, str | None]:
        """(budget, level) to send: the configured one, else the model family's cheapest."""
        if self.thinking_budget is not None or self.thinking_level is not None:
            return self.thinking_budget, self.thinking_level
        levels = thinking_levels(self.model)
        if levels is None or not levels:
            return 0, None
        return None, "minimal" if "minimal" in levels else "low"


class TesseractConfig(_Model):
    languages: str = "eng"
    dpi: Annotated[int, Field(ge=50, le=1200)] = 300
    timeout: PositiveFloat = 180.0
    psm: Literal[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13] = 3  # tesseract --psm (page layout)
    binary: str = "tesseract"  # the program: a name on PATH or a path


class PdftextConfig(_Model):
    min_chars: PositiveInt = 1  # a page with fewer non-space characters has no text layer


class EnginesConfig(_Model):
    gemini: GeminiConfig = GeminiConfig()
    tesseract: TesseractConfig = TesseractConfig()
    pdftext: PdftextConfig = PdftextConfig()
    plugins: list[str] = []  # modules with ENGINES = {name: factory}: more engine names


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
    chunk_pages: PositiveInt = 10
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


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        loc = _format_loc(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        field = re.match(r"^([a-z_]+): (.*)$", msg, re.DOTALL)
        if msg.startswith("watches[") and ": " in msg:  # already carries its own key path
            lines.append(msg)
        elif loc and field:  # a model's check naming its own key: the full path to it
            lines.append(f"{loc}.{field.group(1)}: {field.group(2)}")
        else:
            lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


def _set_path(data: dict[str, Any], keys: list[str], value: Any, var: str) -> None:
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError([f"{var}: no list item {key} to override"])
            idx = int(key)
            if last:
                node[idx] = value
            else:
                node = node[idx]
        else:
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})


def apply_env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """``OCR_DAEMON__REDIS__URL=redis://x`` sets redis.url; ``__0__`` indexes a list."""
    for var in sorted(environ):
        if not var.startswith(OVERRIDE_PREFIX):
            continue
        keys = [k.lower() for k in var[len(OVERRIDE_PREFIX):].split("__") if k]
        if keys:
            _set_path(data, keys, yaml.safe_load(environ[var]), var)
    return data


def parse(data: Any, base_dir: Path, source: Path | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(["(top level): must be a mapping of keys"])
    try:
        cfg = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None
    cfg._source = source
    return cfg


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load, override from the environment, and validate the configuration."""
    env = dict(os.environ if environ is None else environ)
    chosen = path or env.get(CONFIG_ENV)
    if not chosen:
        raise ConfigError([f"no configuration: pass --config FILE or set ${CONFIG_ENV}"])
    file = Path(chosen).expanduser().resolve()
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{file}: not valid YAML ({exc})"]) from None
    if isinstance(raw, dict):
        raw = apply_env_overrides(raw, env)
    return parse(raw, file.parent, file)


def mask_url(url: str) -> str:
    """Hide the password in a URL such as redis://:secret@host:6379/0."""
    return re.sub(r"(://[^:/@]*:)[^@]+@", r"\1***@", url)


def redacted(cfg: Config) -> dict[str, Any]:
    """The resolved configuration as plain data, with secrets masked (for `config check`)."""
    data = cfg.model_dump(mode="json")
    data["redis"]["url"] = mask_url(data["redis"]["url"])
    for secret in ("password", "sentinel_password"):
        data["redis"][secret] = "***" if data["redis"].get(secret) else None
    gem = data["engines"]["gemini"]
    if gem.get("base_url"):
        gem["base_url"] = mask_url(gem["base_url"])
    key_present = bool(os.environ.get(cfg.engines.gemini.api_key_env)
                       or cfg.engines.gemini.api_key_file)
    gem["api_key"] = "***" if key_present else "(not set)"
    api = data["api"]
    api["tokens"] = ["***"] * len(api["tokens"])
    for watch in data["watches"]:
        hook = watch.get("webhook")
        if hook:
            hook["url"] = re.sub(r"\?.*", "?***", mask_url(hook["url"]))  # tokens in query
            hook["secret"] = "***" if hook.get("secret") else None
    return data
