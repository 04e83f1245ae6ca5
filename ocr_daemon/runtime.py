"""The collaborators of one process (config, state store, progress, clock, engines), built once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ocr_daemon import redis_conn
from ocr_daemon.clock import Clock, SystemClock
from ocr_daemon.config import Config, WatchConfig
from ocr_daemon.engines import registry
from ocr_daemon.engines.base import Engine, EngineContext
from ocr_daemon.record.layout import WatchPaths
from ocr_daemon.record.progress import ProgressPublisher
from ocr_daemon.record.state import StateStore


@dataclass
class Runtime:
    cfg: Config
    store: StateStore
    progress: ProgressPublisher
    clock: Clock
    engine_factory: Callable[[EngineContext], Engine] = registry.build
    _engines: dict[str, Engine] = field(default_factory=dict)

    def watch(self, name: str) -> tuple[WatchConfig, WatchPaths]:
        watch = self.cfg.watch(name)
        return watch, WatchPaths.of(watch)

    def engine(self, watch: WatchConfig) -> Engine:
        key = f"{watch.name}:{watch.engine}"  # a document may run another engine (its manifest)
        if key not in self._engines:
            ctx = EngineContext(self.cfg, watch, self.store.r, self.store.prefix)
            self._engines[key] = self.engine_factory(ctx)
        return self._engines[key]


def build(cfg: Config, clock: Clock | None = None,
          engine_factory: Callable[[EngineContext], Engine] | None = None) -> Runtime:
    clock = clock or SystemClock()
    client = redis_conn.client(redis_conn.resolve_url(cfg))
    store = StateStore(client, cfg.redis.key_prefix, cfg.state_ttl, clock)
    return Runtime(cfg, store, ProgressPublisher(store, clock), clock,
                   engine_factory or registry.build)
