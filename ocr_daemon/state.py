"""Live document and chunk state in Redis: named states, attempts, errors, times, TTLs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from .clock import Clock, iso
from .errors import ServiceUnavailable

QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED = (
    "queued", "processing", "completed", "failed", "cancelled",
)
DOC_STATES = (QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED)
CHUNK_STATES = (QUEUED, PROCESSING, COMPLETED, FAILED)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
RECENT_MAX = 200


@dataclass
class ChunkState:
    index: int
    pages: list[int]  # [first, last]
    state: str = QUEUED
    attempts: int = 0
    error: dict[str, Any] | None = None
    started_at: str | None = None
    finished_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))


@dataclass
class DocState:
    doc_id: str
    fields: dict[str, str]
    chunks: list[ChunkState] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.fields.get("state", QUEUED)

    def error(self) -> dict[str, Any] | None:
        raw = self.fields.get("error")
        return json.loads(raw) if raw else None


class StateStore:
    """All reads and writes of live state go through here (keys under one prefix)."""

    def __init__(self, client: redis.Redis, prefix: str, ttl: int, clock: Clock) -> None:
        self.r = client
        self.prefix = prefix
        self.ttl = ttl
        self.clock = clock

    # keys --------------------------------------------------------------------------------
    def doc_key(self, doc_id: str) -> str:
        return f"{self.prefix}doc:{doc_id}"

    def chunks_key(self, doc_id: str) -> str:
        return f"{self.prefix}doc:{doc_id}:chunks"

    @property
    def active_key(self) -> str:
        return f"{self.prefix}active"

    @property
    def recent_key(self) -> str:
        return f"{self.prefix}recent"

    def lock(self, name: str, timeout: float = 30.0) -> Any:
        return self.r.lock(f"{self.prefix}lock:{name}", timeout=timeout, blocking_timeout=timeout)

    # writes ------------------------------------------------------------------------------
    def set_doc(self, doc_id: str, **values: Any) -> None:
        now = self.clock.time()
        data = {k: (json.dumps(v) if isinstance(v, dict | list) else str(v))
                for k, v in values.items() if v is not None}
        data["updated_at"] = iso(now)
        data["updated_ts"] = f"{now:.3f}"
        key, ckey = self.doc_key(doc_id), self.chunks_key(doc_id)
        try:
            pipe = self.r.pipeline()
            pipe.hset(key, mapping=data)
            if values.get("state") in TERMINAL:
                pipe.expire(key, self.ttl)
                pipe.expire(ckey, self.ttl)
                pipe.zrem(self.active_key, doc_id)
                pipe.lpush(self.recent_key, doc_id)
                pipe.ltrim(self.recent_key, 0, RECENT_MAX - 1)
            else:
                pipe.persist(key)
                pipe.zadd(self.active_key, {doc_id: now})
            pipe.execute()
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis: {exc}") from exc

    def touch(self, doc_id: str) -> None:
        self.set_doc(doc_id)

    def init_chunks(self, doc_id: str, chunks: list[ChunkState]) -> None:
        """Record the chunks of a plan, keeping states already there (a redelivery)."""
        try:
            pipe = self.r.pipeline()
            for c in chunks:
                pipe.hsetnx(self.chunks_key(doc_id), str(c.index), c.to_json())
            pipe.execute()
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis: {exc}") from exc

    def set_chunk(self, doc_id: str, chunk: ChunkState) -> None:
        try:
            self.r.hset(self.chunks_key(doc_id), str(chunk.index), chunk.to_json())
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis: {exc}") from exc
        self.touch(doc_id)

    def chunk(self, doc_id: str, index: int, pages: list[int]) -> ChunkState:
        try:
            raw = self.r.hget(self.chunks_key(doc_id), str(index))
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis: {exc}") from exc
        if not raw:
            return ChunkState(index=index, pages=pages)
        return ChunkState(**json.loads(str(raw)))

    # reads -------------------------------------------------------------------------------
    def get(self, doc_id: str) -> DocState | None:
        try:
            pipe = self.r.pipeline()
            pipe.hgetall(self.doc_key(doc_id))
            pipe.hgetall(self.chunks_key(doc_id))
            fields, chunks = pipe.execute()
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis: {exc}") from exc
        if not fields:
            return None
        items = sorted((ChunkState(**json.loads(v)) for v in chunks.values()),
                       key=lambda c: c.index)
        return DocState(doc_id, fields, items)

    def active(self) -> list[str]:
        try:
            return list(self.r.zrange(self.active_key, 0, -1))
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis: {exc}") from exc

    def recent(self, limit: int = 20) -> list[str]:
        try:
            return list(self.r.lrange(self.recent_key, 0, limit - 1))
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis: {exc}") from exc


def read_status(store: StateStore, doc_ids: list[str] | None = None) -> list[DocState]:
    """The live state of the given documents, or of every document in flight."""
    ids = doc_ids if doc_ids is not None else store.active()
    return [s for s in (store.get(i) for i in ids) if s is not None]
