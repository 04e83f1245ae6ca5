"""The google-genai adapter for the Batch API: create a job (inline requests, or a JSONL file
through the File API above ``batch_inline_max_bytes``), get it, cancel it, read its answers.

REST shapes (models/<m>:batchGenerateContent, batches/<id>, batches/<id>:cancel,
files/<id>:download) are the SDK's; its errors become ours through GeminiApi.ours.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.genai import errors as genai_errors
from google.genai import types

from ocr_daemon.engines.gemini.api import GeminiApi, answer_of
from ocr_daemon.engines.gemini.exchange import Answer, Variant
from ocr_daemon.engines.gemini.media import Media, request_bytes
from ocr_daemon.errors import OcrDaemonError

DONE_STATES = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED",
               "JOB_STATE_EXPIRED")


@dataclass(frozen=True)
class BatchRequest:
    key: str  # names the chunk request in the job's answers
    media: Sequence[Media]
    prompt: str


@dataclass(frozen=True)
class Reply:
    """One request's outcome in a finished job: a response (REST JSON) or an error."""

    key: str
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobView:
    name: str
    state: str  # JOB_STATE_*
    replies: list[Reply] | None = None  # inline answers, when the job has them
    responses_file: str | None = None  # answers as JSONL, when the job was a file


class BatchApi:
    def __init__(self, api: GeminiApi) -> None:
        self.api = api
        self.client = api.client
        self.s = api.s

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OcrDaemonError:
            raise
        except Exception as exc:  # the adapter boundary: the SDK's errors become ours
            raise self.api.ours(exc) from None

    def create(self, requests: Sequence[BatchRequest], display_name: str) -> JobView:
        config = self.api.config(Variant(), self.s.max_output_tokens)
        size = sum(request_bytes(r.media, r.prompt) for r in requests)
        if size <= self.s.batch_inline_max_bytes:
            src: Any = [types.InlinedRequest(
                contents=[types.Content(role="user", parts=[
                    *[types.Part.from_bytes(data=m.data, mime_type=m.mime) for m in r.media],
                    types.Part.from_text(text=r.prompt)])],
                config=config, metadata={"key": r.key}) for r in requests]
        else:
            src = self._upload_jsonl(requests, config)
        job = self._call(self.client.batches.create, model=self.s.model, src=src,
                         config=types.CreateBatchJobConfig(display_name=display_name))
        return self._view(job)

    def _upload_jsonl(self, requests: Sequence[BatchRequest],
                      config: types.GenerateContentConfig) -> str:
        generation = config.model_dump(mode="json", by_alias=True, exclude_none=True)
        generation.pop("safetySettings", None)
        lines = []
        for r in requests:
            parts: list[dict[str, Any]] = [
                {"inlineData": {"mimeType": m.mime, "data": base64.b64encode(m.data).decode()}}
                for m in r.media]
            parts.append({"text": r.prompt})
            lines.append(json.dumps({"key": r.key, "request": {
                "contents": [{"role": "user", "parts": parts}],
                "generationConfig": generation}}))
        data = ("\n".join(lines) + "\n").encode()
        file = self._call(self.client.files.upload, file=io.BytesIO(data),
                          config=types.UploadFileConfig(mime_type="application/jsonl",
                                                        display_name="ocr-daemon batch"))
        return str(file.name)

    def get(self, name: str) -> JobView:
        return self._view(self._call(self.client.batches.get, name=name))

    def cancel(self, name: str) -> None:
        self._call(self.client.batches.cancel, name=name)

    def download(self, file_name: str) -> list[Reply]:
        data = self._call(self.client.files.download, file=file_name)
        replies = []
        for line in bytes(data or b"").decode().splitlines():
            if line.strip():
                item = json.loads(line)
                replies.append(Reply(str(item.get("key")), item.get("response"),
                                     item.get("error")))
        return replies

    def _view(self, job: types.BatchJob) -> JobView:
        state = str(getattr(job.state, "value", job.state) or "JOB_STATE_UNSPECIFIED")
        dest = job.dest
        replies = None
        if dest is not None and dest.inlined_responses is not None:
            replies = [Reply((r.metadata or {}).get("key", ""),
                             r.response.model_dump(mode="json", exclude_none=True)
                             if r.response else None,
                             r.error.model_dump(mode="json", exclude_none=True)
                             if r.error else None) for r in dest.inlined_responses]
        return JobView(str(job.name), state, replies, dest.file_name if dest else None)

    def answer(self, response: dict[str, Any]) -> Answer:
        """A stored response (as the SDK or the API wrote it) read like an interactive one."""
        return answer_of(types.GenerateContentResponse.model_validate(response))

    def error(self, error: dict[str, Any]) -> OcrDaemonError:
        """A request's error in a job, classified like an interactive answer's."""
        code = int(error.get("code") or 500)
        body = {"error": {"code": code, "message": str(error.get("message") or ""),
                          "status": str(error.get("status") or "")}}
        return self.api.ours(genai_errors.APIError(code, body))
