"""Uploads: the body streamed to a hidden file in the watch's inbox, checked, then claimed and
queued by the watcher's own code (claim, Dispatcher): an upload is a document like any other.

A crash while the body arrives leaves a hidden temporary file, which housekeeping removes;
a crash after the claim leaves a record in processing/ that the watcher's sweep queues.
Nothing is acknowledged before the claim is durable.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from python_multipart.multipart import MultipartParser, parse_options_header

from ocr_daemon import atomic, log
from ocr_daemon.errors import (
    BadRequest,
    Conflict,
    ServiceUnavailable,
    StorageError,
    TooLarge,
)
from ocr_daemon.formats import sniff
from ocr_daemon.intake.claim import claim
from ocr_daemon.intake.dispatch import Dispatcher
from ocr_daemon.record.disk import Manifest
from ocr_daemon.record.layout import WatchPaths, fit, split_name
from ocr_daemon.runtime import Runtime

FIELD_MAX = 1024  # bytes of a text field (watch, engine)
NAME_BYTES = 200  # the stored name's length, extension included, in UTF-8 bytes
EXTENSIONS = {sniff.PDF: ".pdf", sniff.PNG: ".png", sniff.JPEG: ".jpg", sniff.TIFF: ".tif"}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


def safe_name(client_name: str | None, mime: str) -> str:
    """A file name from a client's, usable as a name in the inbox (never as a path): the
    last component only, no control characters, not hidden, at most NAME_BYTES bytes."""
    raw = (client_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", _UNSAFE.sub("_", raw)).strip(" .")
    stem, ext = split_name(name)
    if not stem.strip("_ ."):
        stem = "upload"
    if not ext:
        ext = EXTENSIONS.get(mime, "")
    ext = fit(ext, 16)
    return fit(stem, NAME_BYTES - len(os.fsencode(ext))) + ext


@dataclass
class Received:
    """The body of one upload: the file on disk and the form's text fields."""

    tmp: Path
    filename: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    has_file: bool = False


class _FormSink:
    """Callbacks of the streaming multipart parser: the `file` part goes to disk as it comes,
    counted against the limit; small text fields are kept."""

    def __init__(self, received: Received, fh: object, limit: int) -> None:
        self.r = received
        self.fh = fh
        self.limit = limit
        self.headers: dict[str, bytes] = {}
        self._field = b""
        self._value = b""
        self.part: str | None = None
        self.is_file = False
        self.buffer = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_done, "on_part_data": self.data,
                "on_part_end": self.part_end}

    def part_begin(self) -> None:
        self.headers, self.part, self.is_file, self.buffer = {}, None, False, bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        self.headers[self._field.decode("latin-1").lower()] = self._value
        self._field, self._value = b"", b""

    def headers_done(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", b""))
        self.part = options.get(b"name", b"").decode("utf-8", "replace")
        if self.part == "file":
            if self.r.has_file:
                raise BadRequest("send one `file` per upload")
            self.is_file = True
            self.r.has_file = True
            raw = options.get(b"filename*") or options.get(b"filename")
            self.r.filename = _decode_filename(raw) if raw is not None else None

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.is_file:
            self.r.size += end - start
            if self.r.size > self.limit:
                raise TooLarge(f"the upload is larger than api.max_upload_bytes "
                               f"({self.limit} bytes)",
                               hint="Send a smaller file, or raise api.max_upload_bytes.")
            self.fh.write(data[start:end])  # type: ignore[attr-defined]
        else:
            self.buffer += data[start:end]
            if len(self.buffer) > FIELD_MAX:
                raise BadRequest(f"form field {self.part!r} is longer than {FIELD_MAX} bytes")

    def part_end(self) -> None:
        if not self.is_file and self.part:
            self.r.fields[self.part] = self.buffer.decode("utf-8", "replace").strip()


def _decode_filename(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if text.lower().startswith("utf-8''"):  # RFC 5987 filename*
        from urllib.parse import unquote

        return unquote(text[7:])
    return text


async def receive(body: AsyncIterator[bytes], content_type: str, inbox: Path,
                  limit: int) -> Received:
    """Stream a multipart body into a hidden file in ``inbox``; removed on any failure."""
    ctype, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequest("send the file as multipart/form-data in the field `file`",
                         hint="curl -F file=@scan.pdf http://127.0.0.1:8080/v1/documents")
    received = Received(inbox / atomic.temp_name())
    try:
        with open(received.tmp, "xb") as fh:
            sink = _FormSink(received, fh, limit)
            parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
            async for chunk in body:
                parser.write(chunk)
            parser.finalize()
        if not received.has_file:
            raise BadRequest("the form has no field `file`")
    except BaseException:  # an aborted body, a refused one, a cancelled request: nothing left
        received.tmp.unlink(missing_ok=True)
        raise
    return received


def _check_type(tmp: Path) -> str:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())  # acknowledged means on disk
    return sniff.sniff(tmp)


@dataclass
class Accepted:
    doc_id: str
    name: str
    queued: bool  # False: Redis is unreachable; the watcher's sweep queues it later
    replayed: bool = False  # an earlier upload with the same Idempotency-Key

    @classmethod
    def of(cls, manifest: Manifest, queued: bool) -> Accepted:
        return cls(manifest.doc_id, manifest.name, queued)


class Uploads:
    """Turns a received body into a claimed, queued document."""

    def __init__(self, rt: Runtime, dispatcher: Dispatcher) -> None:
        self.rt = rt
        self.dispatcher = dispatcher

    def engine_for(self, engine: str | None, allowed: list[str]) -> str | None:
        if not engine:
            return None
        if engine not in allowed:
            raise BadRequest(f"engine {engine!r} is not allowed here",
                             hint=f"api.engines allows: {', '.join(allowed) or 'none'}")
        return engine

    def accept(self, paths: WatchPaths, received: Received, engine: str | None) -> Accepted:
        """Sniff (415 / empty), claim with a sanitised name, queue. Blocking: run in a thread."""
        try:
            mime = _check_type(received.tmp)
            name = safe_name(received.filename, mime)
            watch = self.rt.cfg.watch(paths.name)
            manifest = claim(paths, received.tmp, self.rt.clock, watch.max_file_bytes,
                             name=name, original_name=received.filename, engine=engine)
        except OSError as exc:
            raise StorageError(f"cannot store the upload: {exc.strerror}") from exc
        finally:
            received.tmp.unlink(missing_ok=True)  # claimed: renamed away already
        if manifest is None:
            raise StorageError("the upload vanished before it was claimed")
        log.get(doc_id=manifest.doc_id, watch=paths.name).info(
            "upload_claimed", size=received.size, name=manifest.name)
        return Accepted.of(manifest, self.dispatcher.queue(paths, manifest))

    # Idempotency-Key -------------------------------------------------------------------
    def _key(self, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self.rt.store.prefix}api:idempotency:{digest}"

    def reserve(self, key: str | None) -> str | None:
        """None when the key is new (now reserved) or absent; the document id of an earlier
        upload with this key; Conflict while that upload is still being received."""
        if not key:
            return None
        if len(key) > 255:
            raise BadRequest("Idempotency-Key is longer than 255 characters")
        try:
            if self.rt.store.r.set(self._key(key), "pending", nx=True, ex=600):
                return None
            held = self.rt.store.r.get(self._key(key))
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis: {exc}") from exc
        if held and held != "pending":
            return str(held)
        raise Conflict("an upload with this Idempotency-Key is still being received",
                       hint="Wait for its answer, then send again to read it.")

    def settle(self, key: str | None, doc_id: str | None) -> None:
        """Remember the key's document (or forget the key: its upload failed)."""
        if not key:
            return
        with contextlib.suppress(redis.RedisError):  # the key then expires by itself
            if doc_id is None:
                self.rt.store.r.delete(self._key(key))
            else:
                self.rt.store.r.set(self._key(key), doc_id, ex=self.rt.cfg.api.idempotency_ttl)
