"""Logging through structlog: JSON lines for journald and files, readable console on a terminal."""

from __future__ import annotations

import inspect
import logging
import sys
from typing import Any

import structlog

_SECRET_KEYS = ("api_key", "apikey", "password", "secret", "token", "authorization")


def _drop_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if any(s in key.lower() for s in _SECRET_KEYS):
            event[key] = "***"
    return event


def uses_json(fmt: str = "auto") -> bool:
    """JSON lines unless ``fmt`` asks for the console, or is auto and stderr is a terminal."""
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Set up structlog and route stdlib logging (Celery's) through the same renderer."""
    use_json = uses_json(fmt)
    renderer: Any = (structlog.processors.JSONRenderer() if use_json
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.captureWarnings(True)  # Python warnings (Celery's) become log lines too
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "google_genai", "watchdog"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get(name: str = "ocr_daemon", **bound: Any) -> Any:
    return structlog.get_logger(name).bind(**bound)


# Task arguments bound to every log line of the task (Celery's task_prerun/task_postrun).
_TASK_ARGS = {"watch": "watch", "doc_id": "doc_id", "index": "chunk"}


def bind_task(task_id: str | None = None, task: Any = None, args: Any = None,
              kwargs: Any = None, **_: Any) -> None:
    """task_prerun: bind task_id and the task's watch, doc_id and chunk (from its named
    arguments) to every line logged while it runs, ours and Celery's."""
    structlog.contextvars.clear_contextvars()
    values: dict[str, Any] = {"task_id": task_id}
    try:
        named = inspect.signature(task.run).bind_partial(*(args or ()), **(kwargs or {}))
    except (AttributeError, TypeError, ValueError):
        named = None
    for arg, key in _TASK_ARGS.items():
        if named is not None and arg in named.arguments:
            values[key] = named.arguments[arg]
    structlog.contextvars.bind_contextvars(**values)


def unbind_task(**_: Any) -> None:
    """task_postrun: nothing of a task's context leaks into the next one on this thread."""
    structlog.contextvars.clear_contextvars()
