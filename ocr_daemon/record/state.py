"""Live document and chunk state in Redis: named states, attempts, errors, times, TTLs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.lock

from ocr_daemon.clock import Clock, iso
from ocr_daemon.record.locks import Lock
from ocr_daemon.redis_conn import unavailable

QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED = (
    "queued", "processing", "completed", "failed", "cancelled",
)
DOC_STATES = (QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED)
CHUNK_STATES = (QUEUED, PROCESSING, COMPLETED, FAILED)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
RECENT_MAX = 200
# A one-pass document's chunk without an entry of its own: (state, attempts) by the
# document's state. Failed or cancelled ones are not derived: a chunk that failed has its
# entry (record_failure), and one cut short by a cancel was not completed.
ONE_PASS_CHUNK = {PROCESSING: (PROCESSING, 1), COMPLETED: (COMPLETED, 1)}


@dataclass
class ChunkState:
    index: int
    pages: list[int]  # [first, last]; derived from the plan, never stored
    state: str = QUEUED
    attempts: int = 0
    error: dict[str, Any] | None = None
    started_at: str | None = None
    finished_at: str | None = None

    def to_json(self) -> str:
        data = {k: v for k, v in self.__dict__.items() if k not in ("index", "pages")}
        return json.dumps(data, separators=(",", ":"))


def chunk_pages(index: int, per_chunk: int, pages: int) -> list[int]:
    return [index * per_chunk + 1, min((index + 1) * per_chunk, pages)]


@dataclass
class DocState:
    """A document's live state. Chunks are stored compactly: a done-flag string of one byte
    per chunk, an entry only for chunks started and not completed, attempts only above 1."""

    doc_id: str
    fields: dict[str, str]
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)
    done: str = ""
    retried: dict[int, int] = field(default_factory=dict)
    version: int = 0

    @property
    def state(self) -> str:
        return self.fields.get("state", QUEUED)

    def error(self) -> dict[str, Any] | None:
        raw = self.fields.get("error")
        return json.loads(raw) if raw else None

    def chunk(self, index: int) -> ChunkState:
        if "chunk_spans" in self.fields:  # a plan whose chunks are not equal page ranges
            pages = list(json.loads(self.fields["chunk_spans"])[index])
        else:
            per_chunk = int(self.fields.get("chunk_pages", 1))
            pages = chunk_pages(index, per_chunk, int(self.fields.get("pages", per_chunk)))
        if index < len(self.done) and self.done[index] == "1":
            return ChunkState(index, pages, COMPLETED, self.retried.get(index, 1))
        entry = self.entries.get(index)
        if self.one_pass and entry and self.state == COMPLETED and entry["state"] != FAILED:
            # An entry left by an earlier try (a retry whose message the reaper sent again):
            # a quiet try completed the chunk with its document (pipeline.chunk).
            return ChunkState(index, pages, COMPLETED, max(1, entry.get("attempts", 1)),
                              started_at=entry.get("started_at"),
                              finished_at=self.fields.get("finished_at"))
        if entry:
            return ChunkState(index, pages, **entry)
        if self.one_pass and self.state in ONE_PASS_CHUNK:
            # The one chunk of a document done in one pass, in its first attempt, is not
            # written (pipeline.chunk): the document's own state is the chunk's.
            state, attempts = ONE_PASS_CHUNK[self.state]
            return ChunkState(index, pages, state, attempts,
                              started_at=self.fields.get("started_at"),
                              finished_at=self.fields.get("finished_at"))
        return ChunkState(index, pages)

    @property
    def one_pass(self) -> bool:
        """Done in one pass (an unchunked plan): its one chunk runs in the document's task."""
        return self.fields.get("one_pass") == "1"

    @property
    def chunks(self) -> list[ChunkState]:
        return [self.chunk(i) for i in range(int(self.fields.get("total_chunks", 0)))]


_SET_DOC = """
-- KEYS: doc, chunks, done, retried, version, active, recent, progress lock
-- ARGV: doc_id, now, ttl, terminal, chunk op (set|done|none), index, payload, recent max,
--       only if the document exists (1|0), progress lock token ('' = not taken), its hold
--       ms, then field, value pairs
local state = redis.call('HGET', KEYS[1], 'state')
if not state and ARGV[9] == '1' then return -1 end
local ended = state == 'completed' or state == 'failed' or state == 'cancelled'
if ended and ARGV[4] == '0' then return 0 end
if ARGV[5] == 'set' then
  redis.call('HSET', KEYS[2], ARGV[6], ARGV[7])
elseif ARGV[5] == 'done' then
  redis.call('HDEL', KEYS[2], ARGV[6])
  redis.call('SETRANGE', KEYS[3], tonumber(ARGV[6]), '1')
  if tonumber(ARGV[7]) > 1 then redis.call('HSET', KEYS[4], ARGV[6], ARGV[7]) end
end
-- every field in one HSET: one command where one per field did the same, atomically anyway
if #ARGV >= 12 then redis.call('HSET', KEYS[1], unpack(ARGV, 12, #ARGV)) end
local version = redis.call('INCR', KEYS[5])
local chunky = nil
if ARGV[4] == '1' then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[5], ARGV[3])
  -- a one-pass document never had chunk keys: one EXISTS instead of three EXPIREs
  chunky = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4])
  if chunky > 0 then
    for i = 2, 4 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
  end
  redis.call('ZREM', KEYS[6], ARGV[1])
  redis.call('LPUSH', KEYS[7], ARGV[1])
  redis.call('LTRIM', KEYS[7], 0, tonumber(ARGV[8]) - 1)
  redis.call('EXPIRE', KEYS[7], ARGV[3])
else
  redis.call('ZADD', KEYS[6], ARGV[2], ARGV[1])
end
if ARGV[10] == '' then return 1 end
-- and take the progress writer's lock, reading the state just written (as _TAKE_PROGRESS)
if not redis.call('SET', KEYS[8], ARGV[10], 'NX', 'PX', ARGV[11]) then return {0} end
local fields = redis.call('HGETALL', KEYS[1])
if chunky == nil then chunky = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4]) end
if chunky == 0 then return {1, fields, {}, '', {}, version} end
return {1, fields, redis.call('HGETALL', KEYS[2]), redis.call('GET', KEYS[3]) or '',
        redis.call('HGETALL', KEYS[4]), version}
"""

# The state of a document in one read (atomic, like the MULTI it replaces); a document
# whose chunk keys do not exist (one pass) costs one EXISTS instead of three reads.
_READ_STATE = """
-- KEYS: doc, chunks, done, retried, version
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {} end
if redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4]) == 0 then
  return {fields, {}, '', {}, redis.call('GET', KEYS[5]) or '0'}
end
return {fields, redis.call('HGETALL', KEYS[2]), redis.call('GET', KEYS[3]) or '',
        redis.call('HGETALL', KEYS[4]), redis.call('GET', KEYS[5]) or '0'}
"""


_TAKE_PROGRESS = """
-- KEYS: lock, doc, chunks, done, retried, version; ARGV: token, hold ms
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local fields = redis.call('HGETALL', KEYS[2])
if redis.call('EXISTS', KEYS[3], KEYS[4], KEYS[5]) == 0 then
  return {1, fields, {}, '', {}, redis.call('GET', KEYS[6]) or '0'}
end
return {1, fields, redis.call('HGETALL', KEYS[3]), redis.call('GET', KEYS[4]) or '',
        redis.call('HGETALL', KEYS[5]), redis.call('GET', KEYS[6]) or '0'}
"""

_GIVE_PROGRESS = """
-- KEYS: lock, version; ARGV: token
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return redis.call('GET', KEYS[2]) or '0'
"""


def _pairs(flat: list[str] | dict[str, str]) -> dict[str, str]:
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _doc_state(doc_id: str, fields: dict[str, str], entries: dict[str, str], done: str | None,
               retried: dict[str, str], version: str | int | None) -> DocState | None:
    if not fields:
        return None
    return DocState(doc_id, fields, {int(k): json.loads(v) for k, v in entries.items()},
                    done or "", {int(k): int(v) for k, v in retried.items()}, int(version or 0))


class StateStore:
    """All reads and writes of live state go through here (keys under one prefix).

    Every write bumps the document's version counter in the same round trip, so that the
    progress publisher knows when its last snapshot is stale.
    """

    def __init__(self, client: redis.Redis, prefix: str, ttl: int, clock: Clock) -> None:
        self.r = client
        self.prefix = prefix
        self.ttl = ttl
        self.clock = clock
        self._set_doc = client.register_script(_SET_DOC)
        self._read = client.register_script(_READ_STATE)
        self._take = client.register_script(_TAKE_PROGRESS)
        self._give = client.register_script(_GIVE_PROGRESS)

    # keys --------------------------------------------------------------------------------
    def doc_key(self, doc_id: str) -> str:
        return f"{self.prefix}doc:{doc_id}"

    def chunks_key(self, doc_id: str) -> str:
        return f"{self.prefix}doc:{doc_id}:chunks"

    def version_key(self, doc_id: str) -> str:
        return f"{self.prefix}doc:{doc_id}:version"

    @property
    def active_key(self) -> str:
        return f"{self.prefix}active"

    @property
    def recent_key(self) -> str:
        return f"{self.prefix}recent"

    def lock(self, name: str, timeout: float = 30.0, wait: float | None = None,
             renewed: bool = False) -> Lock:
        """A Redis lock that expires after ``timeout`` s (a killed holder blocks no one for
        longer); taking it waits at most ``wait`` s (default: ``timeout``). ``renewed``: its
        holder keeps it as long as it holds it, ``timeout`` s at a time (locks.Lock)."""
        return Lock(self.r.lock(f"{self.prefix}lock:{name}", timeout=timeout,
                                blocking_timeout=timeout if wait is None else wait, sleep=0.01,
                                thread_local=not renewed), renewed=renewed)

    def progress_lock_key(self, doc_id: str) -> str:
        return f"{self.prefix}lock:progress:{doc_id}"

    def done_key(self, doc_id: str) -> str:
        return f"{self.prefix}doc:{doc_id}:done"

    def retried_key(self, doc_id: str) -> str:
        return f"{self.prefix}doc:{doc_id}:retried"

    def _keys(self, doc_id: str) -> list[str]:
        return [self.doc_key(doc_id), self.chunks_key(doc_id), self.done_key(doc_id),
                self.retried_key(doc_id)]

    # writes ------------------------------------------------------------------------------
    def set_doc(self, doc_id: str, chunk: ChunkState | None = None, *,
                completed: ChunkState | None = None, existing: bool = False,
                **values: Any) -> bool:
        """Update document fields and at most one chunk, bump the version, manage TTLs.

        Atomic (one script): once a document has ended, later non-terminal updates (a chunk
        of a cancelled document finishing its engine call) are ignored, so nothing brings an
        ended document back into the active set or takes the expiry off its keys.
        ``existing``: write only if Redis holds the document (False when it does not: the
        caller rebuilds it from disk), which spares a read before the write.

        The version key expires with the others at the terminal state: while the document
        is in flight none of its keys expire, so refreshing its TTL on every write (an
        EXPIRE per write) bought nothing.
        """
        keys, args = self._set_args(doc_id, chunk, completed, existing, "", values)
        with unavailable():
            return int(self._set_doc(keys=keys, args=args)) != -1

    def set_doc_taking(self, doc_id: str, token: str, hold_ms: int = 10_000,
                       **values: Any) -> tuple[bool, DocState | None]:
        """set_doc, then take_progress, in one round trip (a state the caller publishes at
        once): whether the progress writer's lock was taken, and the state then."""
        keys, args = self._set_args(doc_id, None, None, False, token, values, hold_ms)
        with unavailable():
            reply = self._set_doc(keys=keys, args=args)
        return self._taken(doc_id, reply)

    def _set_args(self, doc_id: str, chunk: ChunkState | None, completed: ChunkState | None,
                  existing: bool, token: str, values: dict[str, Any],
                  hold_ms: int = 10_000) -> tuple[list[str], list[Any]]:
        now = self.clock.time()
        data = {k: (json.dumps(v) if isinstance(v, dict | list) else str(v))
                for k, v in values.items() if v is not None}
        data["updated_at"] = iso(now)
        data["updated_ts"] = f"{now:.3f}"
        if chunk is not None:
            op, index, payload = "set", chunk.index, chunk.to_json()
        elif completed is not None:
            op, index, payload = "done", completed.index, str(completed.attempts)
        else:
            op, index, payload = "none", 0, ""
        keys = [*self._keys(doc_id), self.version_key(doc_id), self.active_key,
                self.recent_key, self.progress_lock_key(doc_id)]
        args: list[Any] = [doc_id, f"{now:.3f}", self.ttl,
                           "1" if values.get("state") in TERMINAL else "0",
                           op, index, payload, RECENT_MAX, "1" if existing else "0",
                           token, hold_ms]
        for key, value in data.items():
            args += [key, value]
        return keys, args

    def set_chunk(self, doc_id: str, chunk: ChunkState) -> None:
        if chunk.state == COMPLETED:
            self.set_doc(doc_id, completed=chunk, waiting="")  # progress again: not waiting
        else:
            self.set_doc(doc_id, chunk)

    def init_chunks(self, doc_id: str, total: int, per_chunk: int, pages: int,
                    done: list[int], failed: list[ChunkState], one_pass: bool = False,
                    spans: list[list[int]] | None = None) -> None:
        """Record a plan's shape and what the disk says has ended (a redelivery keeps the
        entries already there). ``one_pass``: an unchunked plan (DocState.one_pass);
        ``spans`` ([first, last] of each chunk) only when the chunks are not ``per_chunk``
        pages each, the last one shorter."""
        key = self.doc_key(doc_id)
        shape: list[str | int] = ["total_chunks", total, "chunk_pages", per_chunk,
                                  "pages", pages, "one_pass", "1" if one_pass else "0"]
        if spans is not None:
            shape += ["chunk_spans", json.dumps(spans, separators=(",", ":"))]
        with unavailable():
            if not done and not failed:  # one command: no MULTI/EXEC around it
                self.r.hset(key, items=shape)
                return
            pipe = self.r.pipeline()
            pipe.hset(key, items=shape)
            for index in done:
                pipe.setrange(self.done_key(doc_id), index, "1")
            for c in failed:
                pipe.hsetnx(self.chunks_key(doc_id), str(c.index), c.to_json())
            pipe.execute()

    def claim_sha(self, watch: str, sha256: str, record: dict[str, Any],
                  ttl: int) -> dict[str, Any] | None:
        """Remember ``sha256`` as ``record``'s; the earlier record when another holds it."""
        key = f"{self.prefix}sha:{watch}:{sha256}"
        with unavailable():
            if self.r.set(key, json.dumps(record), nx=True, ex=ttl):
                return None
            raw = self.r.get(key)
        held: dict[str, Any] | None = json.loads(raw) if raw else None
        if held is None or held.get("doc_id") == record.get("doc_id"):
            return None
        return held

    def forget_sha(self, watch: str, sha256: str, doc_id: str) -> None:
        """Forget a failed document's sha256, so that dropping it again processes it."""
        key = f"{self.prefix}sha:{watch}:{sha256}"
        with unavailable():
            raw = self.r.get(key)
            if raw and json.loads(raw).get("doc_id") == doc_id:
                self.r.delete(key)

    def forget_active(self, doc_id: str) -> None:
        with unavailable():
            self.r.zrem(self.active_key, doc_id)

    def count_redelivery(self, task_id: str, retries: int) -> int:
        """How many times this message (this task at this retry) has been delivered again.

        Only redeliveries are counted (the first delivery is not: the caller adds it), so a
        message delivered once, which is nearly every message, costs no Redis command. No
        MULTI: the INCR and its EXPIRE go in one round trip, and nothing reads between them.
        """
        key = f"{self.prefix}deliveries:{task_id}:{retries}"
        with unavailable():
            pipe = self.r.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, self.ttl)
            count, _ = pipe.execute()
        return int(count)

    # reads -------------------------------------------------------------------------------
    def get(self, doc_id: str) -> DocState | None:
        with unavailable():
            reply = self._read(keys=[*self._keys(doc_id), self.version_key(doc_id)])
        if not reply:
            return None
        fields, entries, done, retried, version = reply
        return _doc_state(doc_id, _pairs(fields), _pairs(entries), done, _pairs(retried),
                          version)

    def take_progress(self, doc_id: str, token: str,
                      hold_ms: int = 10_000) -> tuple[bool, DocState | None]:
        """Take the document's progress-writer lock and read its state in one round trip."""
        with unavailable():
            reply = self._take(keys=[self.progress_lock_key(doc_id),
                                     *self._keys(doc_id), self.version_key(doc_id)],
                               args=[token, hold_ms])
        return self._taken(doc_id, reply)

    @staticmethod
    def _taken(doc_id: str, reply: list[Any]) -> tuple[bool, DocState | None]:
        if not reply or not reply[0]:
            return False, None
        _, fields, entries, done, retried, version = reply
        return True, _doc_state(doc_id, _pairs(fields), _pairs(entries), done, _pairs(retried),
                                version)

    def give_progress(self, doc_id: str, token: str) -> int:
        """Release the progress-writer lock (if still ours); the version now."""
        with unavailable():
            return int(self._give(keys=[self.progress_lock_key(doc_id),
                                        self.version_key(doc_id)], args=[token]) or 0)

    def active(self) -> list[str]:
        with unavailable():
            return [str(m) for m in self.r.zrange(self.active_key, 0, -1)]

    def recent(self, limit: int = 20) -> list[str]:
        with unavailable():
            return [str(m) for m in self.r.lrange(self.recent_key, 0, limit - 1)]


def read_status(store: StateStore, doc_ids: list[str] | None = None) -> list[DocState]:
    """The live state of the given documents, or of every document in flight."""
    ids = doc_ids if doc_ids is not None else store.active()
    return [s for s in (store.get(i) for i in ids) if s is not None]
