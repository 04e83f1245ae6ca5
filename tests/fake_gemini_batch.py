"""The fake Gemini server's Batch API: create (inline requests or a JSONL file), get, cancel,
states through to succeeded, failed or expired, per-request errors, results to download.

Shapes as google-genai reads them (batches.py): create and get answer an operation-like
``{"name": "batches/<id>", "metadata": {"state": "BATCH_STATE_…", "model", "displayName",
"createTime", "updateTime", "output": {"inlinedResponses": {"inlinedResponses": [...]}} or
{"responsesFile": "files/<id>"}}}``; each inlined response holds ``response`` (a
GenerateContentResponse) or ``error`` (``code``, ``message``) and the request's ``metadata``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fake_gemini import Call, FakeGemini

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def _now() -> str:
    return time.strftime(RFC3339, time.gmtime())


@dataclass
class Job:
    id: str
    model: str
    display_name: str
    requests: list[tuple[str, dict[str, Any]]]  # (key, GenerateContentRequest)
    api_key: str | None
    from_file: bool
    state: str = "BATCH_STATE_PENDING"
    polls: int = 0
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    output: dict[str, Any] | None = None


class FakeBatches:
    """Jobs run when polled: PENDING, then RUNNING, then ``outcome`` after
    ``running_polls`` gets (never while ``hold`` is set)."""

    def __init__(self, fake: FakeGemini) -> None:
        self.fake = fake
        self.jobs: dict[str, Job] = {}
        self.outcome = "BATCH_STATE_SUCCEEDED"  # or BATCH_STATE_FAILED, BATCH_STATE_EXPIRED
        self.running_polls = 1
        self.hold = False
        self.lock = threading.Lock()

    def create(self, call: Call, model: str, body: dict[str, Any]) -> tuple[int, Any]:
        auth = self.fake.auth_error(call.api_key) or self.fake.model_error(model)
        if auth:
            return auth
        batch = body.get("batch") or {}
        source = batch.get("inputConfig") or batch.get("input_config") or {}
        requests: list[tuple[str, dict[str, Any]]] = []
        inline = (source.get("requests") or {}).get("requests")
        if inline is not None:
            for item in inline:
                key = str((item.get("metadata") or {}).get("key", ""))
                requests.append((key, item.get("request") or {}))
        elif source.get("fileName") or source.get("file_name"):
            name = str(source.get("fileName") or source.get("file_name"))
            file = self.fake.files.get(name.rsplit("/", 1)[-1])
            if file is None:
                return 400, self.fake_error(400, "INVALID_ARGUMENT", f"File {name} not found.")
            for line in file["data"].decode().splitlines():
                if line.strip():
                    item = json.loads(line)
                    requests.append((str(item.get("key", "")), item.get("request") or {}))
        else:
            return 400, self.fake_error(400, "INVALID_ARGUMENT", "batch.inputConfig is empty")
        job = Job(uuid.uuid4().hex[:16], model, str(batch.get("displayName") or ""), requests,
                  call.api_key, inline is None)
        with self.lock:
            self.jobs[job.id] = job
        return 200, self.public(job)

    @staticmethod
    def fake_error(code: int, status: str, message: str) -> dict[str, Any]:
        return {"error": {"code": code, "message": message, "status": status}}

    def public(self, job: Job) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta."
                     "GenerateContentBatch",
            "model": f"models/{job.model}", "displayName": job.display_name,
            "createTime": job.created, "updateTime": job.updated, "state": job.state,
            "name": f"batches/{job.id}",
            "batchStats": {"requestCount": str(len(job.requests))}}
        if job.output is not None:
            meta["output"] = job.output
        return {"name": f"batches/{job.id}", "metadata": meta,
                "done": job.state not in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING")}

    def get(self, call: Call, job_id: str) -> tuple[int, Any]:
        auth = self.fake.auth_error(call.api_key)
        if auth:
            return auth
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return 404, self.fake_error(404, "NOT_FOUND", f"batches/{job_id} not found")
            job.polls += 1
            run = False
            if job.state == "BATCH_STATE_PENDING":
                job.state = "BATCH_STATE_RUNNING"
            elif job.state == "BATCH_STATE_RUNNING" and not self.hold \
                    and job.polls > self.running_polls:
                run = True
        if run:
            self.finish(job)
        with self.lock:
            return 200, self.public(job)

    def finish(self, job: Job) -> None:
        """The job ends: every request answered (or not, when it failed or expired)."""
        if self.outcome != "BATCH_STATE_SUCCEEDED":
            job.state, job.updated = self.outcome, _now()
            return
        replies = [self.answer(job, key, request) for key, request in job.requests]
        if job.from_file:
            file_id = uuid.uuid4().hex[:12]
            data = "".join(json.dumps(r) + "\n" for r in replies).encode()
            with self.fake.lock:
                self.fake.files[file_id] = {
                    "name": f"files/{file_id}", "mimeType": "application/jsonl",
                    "sizeBytes": str(len(data)), "uri": f"{self.fake.url}/v1beta/files/{file_id}",
                    "downloadUri": f"{self.fake.url}/v1beta/files/{file_id}:download",
                    "state": "ACTIVE", "source": "GENERATED", "data": data, "polls": 0}
            output: dict[str, Any] = {"responsesFile": f"files/{file_id}"}
        else:
            output = {"inlinedResponses": {"inlinedResponses": [
                {k: v for k, v in r.items() if k != "key"} for r in replies]}}
        job.output, job.state, job.updated = output, "BATCH_STATE_SUCCEEDED", _now()

    def answer(self, job: Job, key: str, request: dict[str, Any]) -> dict[str, Any]:
        from .fake_gemini import Call

        call = Call("batch_request", "POST", f"batches/{job.id}", {}, time.time(), job.api_key,
                    request, model=job.model)
        status, body = self.fake.generate(call, request)
        call.status = status
        with self.fake.lock:
            self.fake.calls.append(call)
        out: dict[str, Any] = {"key": key, "metadata": {"key": key}}
        if status == 200:
            out["response"] = body
        else:
            error = body.get("error") or {}
            out["error"] = {"code": error.get("code", status), "message": error.get("message")}
        return out

    def cancel(self, call: Call, job_id: str) -> tuple[int, Any]:
        auth = self.fake.auth_error(call.api_key)
        if auth:
            return auth
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return 404, self.fake_error(404, "NOT_FOUND", f"batches/{job_id} not found")
            if job.state in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
                job.state, job.updated = "BATCH_STATE_CANCELLED", _now()
        return 200, {}

    def download(self, call: Call, file_id: str) -> tuple[int, bytes]:
        with self.fake.lock:
            file = self.fake.files.get(file_id)
        if file is None or file.get("source") != "GENERATED":
            return 404, json.dumps(self.fake_error(404, "NOT_FOUND", "no such file")).encode()
        return 200, bytes(file["data"])
