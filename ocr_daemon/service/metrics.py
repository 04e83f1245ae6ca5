"""Prometheus metrics of the fleet: counters and histograms kept in Redis, served by a watcher.

Workers run as separate processes, often on other hosts, so a process-local registry would
show one process only. Every process therefore records into one Redis hash,
``<prefix>metrics`` (HINCRBY, HINCRBYFLOAT), and each watcher serves the hash through a
custom collector, together with gauges it reads from Redis at scrape time (documents in
flight, queue depths, engine flags). One scrape of any watcher shows the fleet.

Memory stays bounded: every metric has a fixed set of label names whose values come from
small sets (configured watches, engine names, error codes, states, models); values are
sanitised and cut to 64 characters, and histograms use fixed buckets. A field is
``name<TAB>label values joined by commas<TAB>suffix`` (suffix: ``b<i>`` for bucket i, ``sum``).

Recording never raises into the pipeline: a metric that cannot be written is logged once
per process and forgotten; a document never fails because of a metric.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ocr_daemon import log
from ocr_daemon.config import Config, WatchConfig
from ocr_daemon.intake import leftovers
from ocr_daemon.record.state import StateStore

F = TypeVar("F", bound=Callable[..., None])
INF = float("inf")


class Where(Protocol):
    """Anything holding our Redis client and key prefix (a StateStore, the Gemini guard)."""

    r: redis.Redis
    prefix: str


@dataclass(frozen=True)
class Def:
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()  # a histogram when set (upper bounds; +Inf is added)


FINISHED = Def("ocrd_documents_finished", "Documents that ended, by final state.",
               ("watch", "state"))
PAGES = Def("ocrd_pages", "Pages extracted, by the engine that produced each page.",
            ("engine", "watch"))
ENGINE_SECONDS = Def("ocrd_engine_seconds", "Seconds one chunk spent in its engine (the "
                     "watch's engine setting), result written.", ("engine",),
                     (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
ENGINE_ERRORS = Def("ocrd_engine_errors", "Errors of chunk extraction, by error code (each "
                    "try counts; retried ones too).", ("engine", "code"))
PICKUP_SECONDS = Def("ocrd_pickup_seconds", "Seconds from the watcher first seeing a file as "
                     "it was claimed to its task being queued.", ("watch",),
                     (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900))
RATE_LIMITED = Def("ocrd_gemini_rate_limited", "429 answers from Gemini (kind: minute = "
                   "per-minute quota, day = daily quota).", ("model", "kind"))
LIMITER_WAITS = Def("ocrd_ratelimit_waits", "Requests that waited for the shared rate "
                    "limiter.", ("limiter",))
LIMITER_WAIT_SECONDS = Def("ocrd_ratelimit_wait_seconds", "Seconds spent waiting for the "
                           "shared rate limiter.", ("limiter",))
GEMINI_TOKENS = Def("ocrd_gemini_tokens", "Tokens Gemini billed, from each response's "
                    "usageMetadata (kind: prompt, output, thinking; mode: interactive, "
                    "batch).", ("model", "watch", "kind", "mode"))
GEMINI_REQUESTS = Def("ocrd_gemini_requests", "Gemini responses billed (mode: interactive, "
                      "batch).", ("model", "watch", "mode"))
DEFS = {d.name: d for d in (FINISHED, PAGES, ENGINE_SECONDS, ENGINE_ERRORS, PICKUP_SECONDS,
                            RATE_LIMITED, LIMITER_WAITS, LIMITER_WAIT_SECONDS, GEMINI_TOKENS,
                            GEMINI_REQUESTS)}

_LABEL = re.compile(r"[^A-Za-z0-9_.:/-]")
_reported: set[str] = set()
_reported_lock = threading.Lock()


def key(prefix: str) -> str:
    return f"{prefix}metrics"


def _value(v: object) -> str:
    return _LABEL.sub("_", str(v))[:64] or "_"


def _field(d: Def, values: Sequence[object], suffix: str = "") -> str:
    assert len(values) == len(d.labels), d.name
    return f"{d.name}\t{','.join(_value(v) for v in values)}\t{suffix}"


def _guarded(fn: F) -> F:
    """The boundary of a record function: any failure is logged once per process, then
    swallowed (a metric must never fail a document)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # boundary: metrics never break the pipeline
            with _reported_lock:
                first = fn.__name__ not in _reported
                _reported.add(fn.__name__)
            if first:
                log.get("ocr_daemon.service.metrics").warning(
                    "metrics_not_recorded", metric=fn.__name__,
                    error=f"{type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]


def _count(pipe: Any, prefix: str, d: Def, values: Sequence[object], amount: float = 1) -> None:
    if isinstance(amount, int):
        pipe.hincrby(key(prefix), _field(d, values), amount)
    else:
        pipe.hincrbyfloat(key(prefix), _field(d, values), amount)


def _observe(pipe: Any, prefix: str, d: Def, values: Sequence[object], seconds: float) -> None:
    index = bisect.bisect_left(d.buckets, seconds)  # len(buckets): the +Inf bucket
    pipe.hincrby(key(prefix), _field(d, values, f"b{index}"), 1)
    pipe.hincrbyfloat(key(prefix), _field(d, values, "sum"), seconds)


# --- record functions: one line at each call site ---------------------------------------------


@_guarded
def extracted(where: Where, engine: str, watch: str, pages: Sequence[Any],
              seconds: float) -> None:
    """A chunk extracted: its latency under ``engine``, its pages by the engine of each."""
    pipe = where.r.pipeline(transaction=False)
    _observe(pipe, where.prefix, ENGINE_SECONDS, [engine], seconds)
    by_engine: dict[str, int] = {}
    for page in pages:
        by_engine[page.engine] = by_engine.get(page.engine, 0) + 1
    for name, count in by_engine.items():
        _count(pipe, where.prefix, PAGES, [name, watch], count)
    pipe.execute()


@_guarded
def engine_error(where: Where, engine: str, code: str) -> None:
    pipe = where.r.pipeline(transaction=False)
    _count(pipe, where.prefix, ENGINE_ERRORS, [engine, code])
    pipe.execute()


@_guarded
def pickup(where: Where, watch: str, seen_at: float | None, queued_at: float) -> None:
    """A file's task queued ``queued_at - seen_at`` seconds after its final form was seen
    (no measurement when ``seen_at`` is None: a claim queued later by the sweep)."""
    if seen_at is None:
        return
    pipe = where.r.pipeline(transaction=False)
    _observe(pipe, where.prefix, PICKUP_SECONDS, [watch], max(0.0, queued_at - seen_at))
    pipe.execute()


@_guarded
def finished(where: Where, watch: str, state: str) -> None:
    pipe = where.r.pipeline(transaction=False)
    _count(pipe, where.prefix, FINISHED, [watch, state])
    pipe.execute()


@_guarded
def rate_limited(where: Where, model: str, daily: bool) -> None:
    pipe = where.r.pipeline(transaction=False)
    _count(pipe, where.prefix, RATE_LIMITED, [model, "day" if daily else "minute"])
    pipe.execute()


@_guarded
def gemini_tokens(where: Where, model: str, watch: str, usage: Any) -> None:
    """One billed Gemini response (a gemini Usage): its tokens by kind."""
    mode = "batch" if usage.batch else "interactive"
    pipe = where.r.pipeline(transaction=False)
    _count(pipe, where.prefix, GEMINI_REQUESTS, [model, watch, mode], int(usage.requests))
    for kind in ("prompt", "output", "thinking"):
        _count(pipe, where.prefix, GEMINI_TOKENS, [model, watch, kind, mode],
               int(getattr(usage, f"{kind}_tokens")))
    pipe.execute()


@_guarded
def limiter_waited(where: Where, limiter: str, seconds: float) -> None:
    """A request took its rate-limiter slot after ``seconds`` (not counted below 1 ms)."""
    if seconds < 0.001:
        return
    pipe = where.r.pipeline(transaction=False)
    _count(pipe, where.prefix, LIMITER_WAITS, [limiter])
    _count(pipe, where.prefix, LIMITER_WAIT_SECONDS, [limiter], float(seconds))
    pipe.execute()


# --- exposition ------------------------------------------------------------------------------


def _families(raw: dict[str, str]) -> Iterator[Metric]:
    """Counter and histogram families from the hash's fields (unknown fields are skipped)."""
    values: dict[str, dict[tuple[str, ...], dict[str, float]]] = {}
    for name_field, number in raw.items():
        parts = name_field.split("\t")
        if len(parts) != 3 or parts[0] not in DEFS:
            continue
        name, labels, suffix = parts
        d = DEFS[name]
        label_values = tuple(labels.split(","))
        if len(label_values) != len(d.labels):
            continue
        values.setdefault(name, {}).setdefault(label_values, {})[suffix] = float(number)
    for name, series in sorted(values.items()):
        d = DEFS[name]
        if not d.buckets:
            counter = CounterMetricFamily(d.name, d.help, labels=d.labels)
            for label_values, fields in sorted(series.items()):
                counter.add_metric(list(label_values), fields.get("", 0.0))
            yield counter
            continue
        hist = HistogramMetricFamily(d.name, d.help, labels=d.labels)
        for label_values, fields in sorted(series.items()):
            running, buckets = 0.0, []
            for i, bound in enumerate((*d.buckets, INF)):
                running += fields.get(f"b{i}", 0.0)
                buckets.append(("+Inf" if bound == INF else f"{bound:g}", running))
            hist.add_metric(list(label_values), buckets, fields.get("sum", 0.0))
        yield hist


class FleetCollector(Collector):
    """Reads Redis at each scrape: the shared counters and histograms, plus live gauges."""

    def __init__(self, store: StateStore, watches: Sequence[str] = ()) -> None:
        self.store = store
        self.watches = tuple(_value(w) for w in watches)  # shown with 0 when idle

    def collect(self) -> Iterator[Metric]:
        from ocr_daemon.commands.status import engines, queue_depths

        up = GaugeMetricFamily("ocrd_redis_up", "1 when this scrape could read Redis.")
        try:
            raw: dict[str, str] = self.store.r.hgetall(key(self.store.prefix))  # type: ignore[assignment]
            families = list(_families(raw))
            families += self._live(queue_depths(self.store.r, self.store.prefix),
                                   engines(self.store.r, self.store.prefix))
        except Exception as exc:  # boundary: a scrape answers even when Redis does not
            log.get("ocr_daemon.service.metrics").warning("metrics_scrape_failed",
                                                  error=f"{type(exc).__name__}: {exc}")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _live(self, queues: dict[str, dict[str, int]], flags: dict[str, Any]) -> list[Metric]:
        docs = GaugeMetricFamily("ocrd_documents", "Documents in flight, by state.",
                                 labels=["watch", "state"])
        counts: dict[tuple[str, str], int] = {}
        ids = self.store.active()
        pipe = self.store.r.pipeline(transaction=False)
        for doc_id in ids:
            pipe.hmget(self.store.doc_key(doc_id), ["watch", "state"])
        for watch, state in pipe.execute() if ids else []:
            if state:
                label = (_value(watch or "?"), _value(state))
                counts[label] = counts.get(label, 0) + 1
        for watch in self.watches:
            for state in ("queued", "processing"):
                counts.setdefault((watch, state), 0)
        for (watch, state), n in sorted(counts.items()):
            docs.add_metric([watch, state], n)
        depth = GaugeMetricFamily("ocrd_queue_messages", "Celery messages by queue: waiting "
                                  "in the queue, or taken by a worker and not yet "
                                  "acknowledged.", labels=["queue", "kind"])
        for queue, d in queues.items():
            depth.add_metric([queue, "waiting"], d["waiting"])
            depth.add_metric([queue, "unacked"], d["unacked"])
        gem = flags.get("gemini", {})
        engine = GaugeMetricFamily("ocrd_engine_blocked", "1 when an engine is stopped for "
                                   "every worker (reason: key_rejected, config_refused, "
                                   "daily_quota).",
                                   labels=["engine", "reason"])
        engine.add_metric(["gemini", "key_rejected"], 1 if gem.get("disabled") else 0)
        engine.add_metric(["gemini", "config_refused"], 1 if gem.get("refused") else 0)
        engine.add_metric(["gemini", "daily_quota"], 1 if gem.get("paused") else 0)
        return [docs, depth, engine]


class InboxCollector(Collector):
    """Reads the inboxes at each scrape: entries the watcher leaves alone, by reason."""

    def __init__(self, watches: Sequence[WatchConfig]) -> None:
        self.watches = tuple(watches)

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("ocrd_inbox_left_alone", "Inbox entries the watcher leaves "
                                  "alone, by reason (see `ocr-daemon status`).",
                                  labels=["watch", "reason"])
        now = time.time()
        for watch in self.watches:
            _, counts = leftovers.scan(watch, now, limit=0)
            for reason in leftovers.REASONS:
                gauge.add_metric([_value(watch.name), reason], counts.get(reason, 0))
        yield gauge


def registry_for(cfg: Config, store: StateStore) -> CollectorRegistry:
    collector = FleetCollector(store, [w.name for w in cfg.watches])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    registry.register(InboxCollector(cfg.watches))
    return registry


class Server:
    """The /metrics HTTP endpoint of a watcher (``metrics.enabled``)."""

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self.httpd = httpd
        self.thread = thread

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def serve(cfg: Config, store: StateStore) -> Server | None:
    """Start the endpoint when enabled; a port that cannot be bound is logged, not fatal."""
    m = cfg.metrics
    if not m.enabled:
        return None
    logger = log.get("ocr_daemon.service.metrics", address=m.address, port=m.port)
    try:
        httpd, thread = start_http_server(m.port, addr=m.address,
                                          registry=registry_for(cfg, store))
    except OSError as exc:
        logger.error("metrics_server_failed", error=str(exc))
        return None
    logger.info("metrics_serving", url=f"http://{m.address}:{m.port}/metrics")
    return Server(httpd, thread)


def stop(server: Server | None) -> None:
    if server is not None:
        server.stop()
