"""Batch mode: chunk requests staged in Redis, sent together as Gemini Batch API jobs, polled.

A chunk's batch state is its *ticket*, a JSON file beside the chunk in the document's record
(processing/<doc_id>/): staged -> submitted (the job's name) -> done (the answer, or the
request's error), or interactive (the job failed, expired or was cancelled and
``batch_fallback`` is interactive). The ticket is on disk, not only in Redis: when every
process restarts (or Redis is flushed) while a job runs, the chunk's next try reads the job
name from it and polls the same job.

Redis keys (under the prefix; <fp> names the model and its settings):

- ``gemini:batch:staged:<fp>``: hash of staged requests (key -> ticket path, pages): ids and
  paths, never bytes. The first chunk to find them due (``batch_max_requests`` staged, or
  the oldest staged ``batch_collect_seconds`` ago) sends them as one job, under a lock.
- ``gemini:batch:job:<name>``: the job's requests (key -> ticket path): the poller writes
  each answer into its ticket.
- ``gemini:batch:state:<name>``: the job's last seen state; it expires after the poll
  interval, so one worker polls a job at a time and at most that often (the interval grows
  with the job's age up to ``batch_poll_max``).

A chunk waiting for its job raises WaitingForBatch: its task is retried later without
holding a worker or counting against its retries, so batch documents never block others.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from ocr_daemon import atomic, log
from ocr_daemon.config import GeminiConfig
from ocr_daemon.engines.base import Page, PageRequest
from ocr_daemon.errors import ServiceUnavailable

if TYPE_CHECKING:
    from ocr_daemon.engines.gemini.batch_api import BatchApi, BatchRequest, Reply

SUCCEEDED = "JOB_STATE_SUCCEEDED"
ENDED_BADLY = ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")
KEEP_JOB = 3 * 24 * 3600  # a job's records outlive the API's 24 h (and its 48 h of results)
SUBMIT_LOCK_MS = 300_000
POLL_LOCK_MS = 120_000

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def ticket_path(request: PageRequest) -> Path:
    first, last = request.pages[0].number, request.pages[-1].number
    return request.path.parent / f".{request.path.name}.p{first}-{last}.batch.json"


def read_ticket(path: Path) -> dict[str, Any] | None:
    try:
        data = atomic.read_json(path)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_ticket(path: Path, ticket: dict[str, Any]) -> bool:
    """Write a ticket; False when its document's record is gone (cancelled, ended)."""
    if not path.parent.is_dir():
        return False
    try:
        atomic.write_json(path, ticket, create_parents=False)
    except OSError:
        return False
    return True


def new_ticket(path: Path, request: PageRequest, now: float) -> dict[str, Any]:
    key = hashlib.sha256(str(path).encode()).hexdigest()[:24]
    return {"key": key, "state": "staged", "staged_at": now, "job": None,
            "pages": [[p.number, p.index] for p in request.pages]}


def request_of(entry: dict[str, Any]) -> PageRequest:
    return PageRequest(Path(entry["path"]), entry["mime"],
                       tuple(Page(int(n), int(i)) for n, i in entry["pages"]))


@dataclass(frozen=True)
class Poll:
    state: str
    replies: list[Reply] | None = None  # the answers, when this call fetched a finished job


class Batches:
    """The fleet's batch jobs of one model and settings (``fp``), shared through Redis."""

    def __init__(self, client: redis.Redis, prefix: str, settings: GeminiConfig, fp: str,
                 api: Callable[[], BatchApi], clock: Callable[[], float] = time.time) -> None:
        self.r = client
        self.prefix = prefix
        self.s = settings
        self.api = api
        self.now = clock
        self.staged_key = f"{prefix}gemini:batch:staged:{fp}"
        self.submit_lock = f"{prefix}gemini:batch:submit:{fp}"
        self.jobs_key = f"{prefix}gemini:batch:jobs:{fp}"  # jobs not ended: name -> sent at
        self._release = client.register_script(_RELEASE)
        self.log = log.get("ocr_daemon.engines.gemini.batch", model=settings.model)

    def _job_key(self, name: str) -> str:
        return f"{self.prefix}gemini:batch:job:{name}"

    def _state_key(self, name: str) -> str:
        return f"{self.prefix}gemini:batch:state:{name}"

    def poll_interval(self, submitted_at: float) -> float:
        age = max(0.0, self.now() - submitted_at)
        return min(self.s.batch_poll_max, max(self.s.batch_poll_interval, age / 10))

    def stage(self, path: Path, request: PageRequest, ticket: dict[str, Any]) -> None:
        entry = {"ticket": str(path), "path": str(request.path), "mime": request.mime,
                 "pages": ticket["pages"], "staged_at": ticket["staged_at"]}
        self._redis(self.r.hsetnx, self.staged_key, ticket["key"], json.dumps(entry))

    def submit_due(self, build: Callable[[str, PageRequest], BatchRequest]) -> str | None:
        """Send the staged requests as one job when they are due; the job's name, or None."""
        staged = self._staged()
        if not staged:
            return None
        oldest = min(float(e["staged_at"]) for e in staged.values())
        due = (len(staged) >= self.s.batch_max_requests
               or self.now() - oldest >= self.s.batch_collect_seconds)
        if not due:
            return None
        token = uuid.uuid4().hex
        if not self._redis(self.r.set, self.submit_lock, token, nx=True, px=SUBMIT_LOCK_MS):
            return None
        try:
            return self._submit(build)
        finally:
            self._redis(self._release, keys=[self.submit_lock], args=[token])

    def _staged(self) -> dict[str, dict[str, Any]]:
        raw = self._redis(self.r.hgetall, self.staged_key)
        out: dict[str, dict[str, Any]] = {}
        for key, value in raw.items():
            entry = json.loads(value)
            if Path(entry["ticket"]).parent.is_dir():
                out[str(key)] = entry
            else:  # its document ended or was cancelled: never sent
                self._redis(self.r.hdel, self.staged_key, key)
        return out

    def _submit(self, build: Callable[[str, PageRequest], BatchRequest]) -> str | None:
        staged = sorted(self._staged().items(), key=lambda kv: float(kv[1]["staged_at"]))
        taken = staged[:self.s.batch_max_requests]
        requests: list[BatchRequest] = []
        tickets: dict[str, str] = {}
        for key, entry in taken:
            try:
                requests.append(build(key, request_of(entry)))
            except OSError:  # the chunk file is gone with its document
                self._redis(self.r.hdel, self.staged_key, key)
                continue
            tickets[key] = entry["ticket"]
        if not requests:
            return None
        job = self.api().create(requests, f"ocr-daemon {len(requests)} chunks")
        now = self.now()
        pipe = self.r.pipeline()
        pipe.zadd(self.jobs_key, {job.name: now})
        pipe.hset(self._job_key(job.name), mapping=tickets)  # type: ignore[arg-type]  # redis-py: invariant keys
        pipe.expire(self._job_key(job.name), KEEP_JOB)
        pipe.set(self._state_key(job.name), job.state,
                 px=int(self.s.batch_poll_interval * 1000))
        self._redis(pipe.execute)
        for key, path in tickets.items():
            ticket = read_ticket(Path(path)) or {}
            ticket.update(state="submitted", job=job.name, submitted_at=now, key=key)
            write_ticket(Path(path), ticket)
        self._redis(self.r.hdel, self.staged_key, *tickets)
        self.log.info("gemini_batch_submitted", job=job.name, requests=len(requests),
                      state=job.state)
        return job.name

    def poll(self, name: str, submitted_at: float) -> Poll:
        """The job's state, asking the API at most once per poll interval for the fleet; a
        finished job's answers are written into the tickets of its requests."""
        cached = self._redis(self.r.get, self._state_key(name))
        if cached:
            return Poll(str(cached))
        token = uuid.uuid4().hex
        lock = f"{self._state_key(name)}:lock"
        if not self._redis(self.r.set, lock, token, nx=True, px=POLL_LOCK_MS):
            return Poll("JOB_STATE_RUNNING")  # another worker is asking right now
        try:
            return self._poll(name, submitted_at)
        finally:
            self._redis(self._release, keys=[lock], args=[token])

    def _poll(self, name: str, submitted_at: float) -> Poll:
        api = self.api()
        view = api.get(name)
        tickets = {str(k): str(v) for k, v in
                   self._redis(self.r.hgetall, self._job_key(name)).items()}
        alive = {k: p for k, p in tickets.items() if Path(p).parent.is_dir()}
        replies = None
        if view.state == SUCCEEDED:
            replies = view.replies
            if replies is None and view.responses_file:
                replies = api.download(view.responses_file)
            for reply in replies or []:
                if reply.key in alive:
                    self.record_reply(Path(alive[reply.key]), reply)
            ttl = KEEP_JOB
        elif view.state in ENDED_BADLY:
            ttl = KEEP_JOB
        else:
            ttl = int(self.poll_interval(submitted_at))
        if ttl == KEEP_JOB:
            self._redis(self.r.zrem, self.jobs_key, name)
        self._redis(self.r.set, self._state_key(name), view.state, ex=max(1, ttl))
        self.log.info("gemini_batch_polled", job=name, state=view.state)
        return Poll(view.state, replies)

    def replies(self, name: str) -> list[Reply]:
        """A finished job's answers, asked again (a chunk whose ticket missed them: the job's
        record in Redis was lost)."""
        api = self.api()
        view = api.get(name)
        if view.replies is not None:
            return view.replies
        return api.download(view.responses_file) if view.responses_file else []

    def sweep(self) -> None:
        """Cancel the jobs whose documents have all been cancelled or ended (their answers
        would be ignored): cheap, no API call unless one is found."""
        for name in self._redis(self.r.zrange, self.jobs_key, 0, -1):
            tickets = self._redis(self.r.hvals, self._job_key(str(name)))
            if tickets and any(Path(p).parent.is_dir() for p in tickets):
                continue
            if self._redis(self.r.zrem, self.jobs_key, name):  # one worker cancels it
                self.api().cancel(str(name))
                self.log.info("gemini_batch_cancelled", job=str(name), reason="no document left")

    @staticmethod
    def record_reply(path: Path, reply: Reply) -> None:
        ticket = read_ticket(path)
        if ticket is None or ticket.get("state") != "submitted":
            return
        ticket.update(state="done", response=reply.response, error=reply.error)
        write_ticket(path, ticket)

    def _redis(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"cannot reach the Gemini batch state in Redis: {exc}"
                                     ) from exc


def status(client: redis.Redis, prefix: str) -> dict[str, int]:
    """For `ocr-daemon status`: chunk requests staged, and batch jobs sent and not ended."""
    staged = sum(int(client.hlen(k)) for k in
                 client.scan_iter(f"{prefix}gemini:batch:staged:*", count=100))
    jobs = sum(int(client.zcard(k)) for k in
               client.scan_iter(f"{prefix}gemini:batch:jobs:*", count=100))
    return {"staged": staged, "jobs": jobs}


def backlog_pages(client: redis.Redis, prefix: str, watch: str) -> int:
    """Pages of the watch's documents in flight not yet in a finished chunk (the auto mode's
    measure of a backlog); cached 5 s so chunks do not each read every document."""
    from ocr_daemon.clock import SystemClock
    from ocr_daemon.record.state import StateStore, read_status

    cache = f"{prefix}gemini:backlog:{watch}"
    cached = client.get(cache)
    if cached is not None:
        return int(cached)
    store = StateStore(client, prefix, 3600, SystemClock())
    pages = 0
    for doc in read_status(store):
        if doc.fields.get("watch") != watch:
            continue
        total = int(doc.fields.get("pages", 0) or 0)
        per_chunk = int(doc.fields.get("chunk_pages", 1) or 1)
        pages += max(0, total - doc.done.count("1") * per_chunk)
    client.set(cache, pages, ex=5)
    return pages
