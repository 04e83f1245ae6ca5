"""The collaborators of one process (config, state store, progress, clock, engines, "document
ended" hooks), built once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ocr_daemon import redis_conn
from ocr_daemon.clock import Clock, SystemClock
from ocr_daemon.config import Config, WatchConfig
from ocr_daemon.engines import registry
from ocr_daemon.engines.base import Engine, EngineContext
from ocr_daemon.record.layout import WatchPaths
from ocr_daemon.record.progress import ProgressPublisher
from ocr_daemon.record.state import StateStore
from ocr_daemon.service import metrics

if TYPE_CHECKING:
    from ocr_daemon.record.doc import Doc

# Called once a document's ending has been carried out (every terminal file written), with
# its final state: metrics, the webhook. The process that builds the Runtime chooses them,
# so the ending logic (pipeline.finish) imports neither Celery nor the webhook.
EndHook = Callable[["Runtime", "Doc", str], None]


@dataclass
class Runtime:
    cfg: Config
    store: StateStore
    progress: ProgressPublisher
    clock: Clock
    engine_factory: Callable[[EngineContext], Engine] = registry.build
    _engines: dict[str, Engine] = field(default_factory=dict)
    on_end: list[EndHook] = field(default_factory=list)

    def watch(self, name: str) -> tuple[WatchConfig, WatchPaths]:
        watch = self.cfg.watch(name)
        return watch, WatchPaths.of(watch)

    def engine(self, watch: WatchConfig) -> Engine:
        key = f"{watch.name}:{watch.engine}"  # a document may run another engine (its manifest)
        if key not in self._engines:
            ctx = EngineContext(self.cfg, watch, self.store.r, self.store.prefix, self.clock)
            self._engines[key] = self.engine_factory(ctx)
        return self._engines[key]

    def ended(self, doc: Doc, state: str) -> None:
        """Run the "document ended" hooks, in order."""
        for hook in self.on_end:
            hook(self, doc, state)


def count_ending(rt: Runtime, doc: Doc, state: str) -> None:
    """The metrics hook every Runtime has: documents finished, by watch and state."""
    metrics.finished(rt.store, doc.watch.name, state)


def build(cfg: Config, clock: Clock | None = None,
          engine_factory: Callable[[EngineContext], Engine] | None = None,
          on_end: Sequence[EndHook] = ()) -> Runtime:
    """The Runtime of ``cfg``; ``on_end``: "document ended" hooks after the metrics one."""
    clock = clock or SystemClock()
    client = redis_conn.client(redis_conn.resolve_url(cfg), cfg.redis)
    store = StateStore(client, cfg.redis.key_prefix, cfg.state_ttl, clock)
    return Runtime(cfg, store, ProgressPublisher(store, clock), clock,
                   engine_factory or registry.build, on_end=[count_ending, *on_end])
