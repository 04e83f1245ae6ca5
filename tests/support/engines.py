"""An engine plugin for tests and benchmarks: ``sleeping``, a remote OCR API stand-in with faults.

Chosen the way users choose any plugin engine (README, Engines)::

    engines: {plugins: [tests.support.engines]}
    watches: [{..., engine: sleeping, engine_options: {latency: 0.5, failing_pages: [15]}}]

It waits ``latency`` per request plus ``per_page`` per page (a remote API's cost grows with
the pages it transcribes), then returns each page's text layer (or 'page N' for an image),
with injectable faults: transient failures, permanent page failures, a crash of the worker
process. With ``counter_dir`` every call is counted in a file per document and first page
(``<doc_id>-<page>``, crashes in ``crash-<doc_id>-<page>``, the time of each call in
``times-<doc_id>-<page>``), shared by every worker process.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ocr_daemon import config
from ocr_daemon.engines.base import (
    Engine,
    EngineContext,
    Extraction,
    Factory,
    PageRequest,
    PageText,
)
from ocr_daemon.errors import EngineUnavailable, PageFailed, TransientEngineError

PLUGIN = __name__  # the module name to list in engines.plugins


class SleepingOptions(BaseModel):
    """The ``engine_options`` of a watch using ``engine: sleeping``."""

    model_config = ConfigDict(extra="forbid")
    latency: float = Field(0.0, ge=0)  # seconds per request
    per_page: float = Field(0.0, ge=0)  # seconds per page of the request
    transient_failures: int = Field(0, ge=0)  # the first N calls per chunk fail, retryably
    retry_after: float = Field(0.1, gt=0)  # ... asking to be tried again after this long
    failing_pages: list[int] = []  # a chunk holding one of these fails with page_failed
    crash_pages: list[int] = []  # a chunk holding one of these kills its worker process ...
    crash_times: int = Field(1, ge=1)  # ... this many times (needs counter_dir)
    counter_dir: Path | None = None  # where calls are counted (transient failures need it)


class Counter:
    """A per-key call counter in a folder, shared by every worker process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def bump(self, key: str) -> int:
        """Count a call; its time goes to ``times-<key>``, one line per call."""
        with open(self.folder / f"times-{key}", "a") as fh:
            fh.write(f"{time.time()}\n")
        path = self.folder / key
        with open(path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            count = int(fh.read() or 0) + 1
            fh.seek(0)
            fh.truncate()
            fh.write(str(count))
        return count


class SleepingEngine:
    """Sleeps, injects the configured faults, then returns the text layer."""

    name = "sleeping"

    def __init__(self, options: SleepingOptions) -> None:
        self.options = options
        self.counter = Counter(options.counter_dir) if options.counter_dir else None

    def extract(self, request: PageRequest) -> Extraction:
        o = self.options
        numbers = [p.number for p in request.pages]
        key = f"{_doc_id(request.path)}-{numbers[0]}"
        attempt = self.counter.bump(key) if self.counter else 1
        time.sleep(o.latency + o.per_page * len(numbers))
        if set(numbers) & set(o.crash_pages) and self.counter and self.counter.bump(
                f"crash-{key}") <= o.crash_times:
            os._exit(137)  # like a SIGKILL by the OOM killer
        if attempt <= o.transient_failures:
            raise TransientEngineError(f"injected transient failure {attempt}",
                                       retry_after=o.retry_after)
        bad = sorted(set(numbers) & set(o.failing_pages))
        if bad:
            raise PageFailed(f"injected permanent failure on page {bad[0]}")
        # Imported here, not at the top: every command (`cancel`, `status`) imports this
        # plugin with the config, and pypdfium2 would add ~0.3 s to each on a loaded CI host.
        from ocr_daemon.formats import pdf
        from ocr_daemon.formats.sniff import PDF

        if request.mime == PDF:
            texts = pdf.page_texts(request.path, [p.index for p in request.pages])
        else:
            texts = [f"page {n}" for n in numbers]
        return Extraction([PageText(n, t, self.name) for n, t in zip(numbers, texts,
                                                                     strict=True)])


def _doc_id(path: Path) -> str:
    """The document a request is for: the folder under processing/ (a chunk file is one
    level deeper, in its chunks/ folder)."""
    parts = path.parts
    if "processing" not in parts:  # a file handed to the engine directly, by a unit test
        return path.stem
    return parts[len(parts) - parts[::-1].index("processing")]


def sleeping(ctx: EngineContext) -> Engine:
    try:
        options = SleepingOptions.model_validate(ctx.watch.engine_options)
    except ValidationError as exc:
        raise EngineUnavailable(f"watch {ctx.watch.name}: bad engine_options: {exc}") from None
    return SleepingEngine(options)


ENGINES: dict[str, Factory] = {"sleeping": sleeping}


def use_sleeping(env: Any, **options: Any) -> None:
    """Rewrite ``env``'s config file so that every watch uses ``sleeping`` with ``options``
    (the processes started after this read it: start them afterwards)."""
    SleepingOptions.model_validate(options)  # a typo in a test fails here, not in a worker
    plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    data = yaml.safe_load(env.config_path.read_text(encoding="utf-8"))
    data.setdefault("engines", {})["plugins"] = [PLUGIN]
    for watch in data["watches"]:
        watch["engine"] = "sleeping"
        watch["engine_options"] = plain
    env.config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    env.cfg = config.load(env.config_path, environ={})
