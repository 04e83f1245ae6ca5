"""The fake Gemini server's HTTP side: routes of the REST API google-genai calls."""

from __future__ import annotations

import contextlib
import json
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .fake_gemini_shapes import error_body

if TYPE_CHECKING:
    from .fake_gemini import Call, FakeGemini

_BATCH_CREATE = re.compile(r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):batchGenerateContent$")
_BATCH = re.compile(r"^/(?P<version>[^/]+)/batches/(?P<id>[^/:]+)$")
_BATCH_CANCEL = re.compile(r"^/(?P<version>[^/]+)/batches/(?P<id>[^/:]+):cancel$")
_DOWNLOAD = re.compile(r"^(?:/download)?/(?P<version>[^/]+)/files/(?P<id>[^/:]+):download$")
_MODEL = re.compile(r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+)$")
_GENERATE = re.compile(r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):generateContent$")
_UPLOAD = re.compile(r"^/upload/(?P<version>[^/]+)/files$")
_FILE = re.compile(r"^/(?P<version>[^/]+)/files/(?P<id>[^/]+)$")


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeGemini:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    def _send_raw(self, status: int, data: bytes) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def _record(self, kind: str, body: Any = None) -> Call:
        query = parse_qs(urlsplit(self.path).query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        key = headers.get("x-goog-api-key") or next(iter(query.get("key") or []), None)
        from .fake_gemini import Call  # the two modules use each other

        call = Call(kind, self.command, urlsplit(self.path).path, headers, time.time(), key, body)
        with self.fake.lock:
            self.fake.calls.append(call)
        return call

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        raw = self._body()
        query = parse_qs(urlsplit(self.path).query)
        if _UPLOAD.match(path) and "upload_id" in query:
            call = self._record("upload")
            status, body, headers = self.fake.upload_chunk(call, raw, query["upload_id"][0])
            call.status = status
            return self._send(status, body, headers)
        try:
            payload = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            payload = None
        batch = _BATCH_CREATE.match(path) or _BATCH_CANCEL.match(path)
        if batch:
            call = self._record("batch_create" if "model" in batch.groupdict()
                                else "batch_cancel", payload)
            if "model" in batch.groupdict():
                call.model = batch.group("model")
                status, body = self.fake.batch.create(call, call.model, payload or {})
            else:
                status, body = self.fake.batch.cancel(call, batch.group("id"))
            call.status = status
            return self._send(status, body)
        match = _GENERATE.match(path)
        if match:
            call = self._record("generate", payload)
            call.model = match.group("model")
            status, body = self.fake.generate(call, payload or {})
            call.status = status
            return self._send(status, body)
        if _UPLOAD.match(path):
            call = self._record("upload_start", payload)
            status, body, headers = self.fake.upload_start(call, payload or {})
            call.status = status
            return self._send(status, body, headers)
        self._record("unknown", payload).status = 404
        return self._send(404, error_body(404, "NOT_FOUND", f"no route {path}"))

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        batch = _BATCH.match(path)
        if batch:
            call = self._record("batch_get")
            call.status, body = self.fake.batch.get(call, batch.group("id"))
            return self._send(call.status, body)
        download = _DOWNLOAD.match(path)
        if download:
            call = self._record("file_download")
            call.status, data = self.fake.batch.download(call, download.group("id"))
            return self._send_raw(call.status, data)
        model = _MODEL.match(path)
        if model:
            call = self._record("model_get")
            call.model = model.group("model")
            call.status, body = self.fake.model_get(call, call.model)
            return self._send(call.status, body)
        match = _FILE.match(path)
        call = self._record("file_get" if match else "unknown")
        status, body = (self.fake.file_get(call, match.group("id")) if match
                        else (404, error_body(404, "NOT_FOUND", f"no route {path}")))
        call.status = status
        self._send(status, body)

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        match = _FILE.match(path)
        call = self._record("file_delete" if match else "unknown")
        with self.fake.lock:
            found = match is not None and self.fake.files.pop(match.group("id"), None) is not None
        call.status = 200 if found else 404
        self._send(call.status, {} if found else error_body(404, "NOT_FOUND", "no such file"))
