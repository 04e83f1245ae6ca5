"""Loading: YAML file, environment overrides, key paths in every error, secrets masked."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from ocr_daemon.config.base import (
    CONFIG_ENV,
    OVERRIDE_PREFIX,
)
from ocr_daemon.config.models import (
    Config,
)
from ocr_daemon.errors import ConfigError


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
