"""A local stand-in for the Gemini REST API (generateContent, File API, models.get, Batch API)
with scriptable faults: its behaviour here, its HTTP routes in fake_gemini_http."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from ocr_daemon.engines.gemini.prompt import BLANK, PAGE_BREAK

from .fake_gemini_batch import FakeBatches
from .fake_gemini_http import _UPLOAD, _Handler
from .fake_gemini_shapes import (
    HELP,
    _b64decode,
    _camel,
    bad_key_body,
    error_body,
    forbidden_body,
    pdf_texts,
    quota_failure,
    retry_info,
    usage_metadata,
)

PER_DAY_QUOTA_ID = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
PER_MINUTE_QUOTA_ID = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
TOKENS_PER_PAGE = 258
THOUGHTS = {"MINIMAL": 0, "LOW": 40, "MEDIUM": 120, "HIGH": 300}  # per request, by level


# What each injectable fault does; see ``FakeGemini.inject``.
FAULTS = ("rate_limit", "daily_quota", "internal", "unavailable", "bad_gateway",
          "gateway_timeout", "slow", "max_tokens", "recitation", "safety", "merge_pages",
          "bad_key", "forbidden", "media_refused")

# The models this server knows (models.get answers with their limits); any other id, or one
# in FakeGemini.retired, is answered 404 NOT_FOUND as the real API does.
MODELS = {
    "gemini-3.1-flash-lite": (1_048_576, 65_536),
    "gemini-3.5-flash-lite": (1_048_576, 65_536),
    "gemini-3.5-flash": (1_048_576, 65_536),
    "gemini-3.1-pro-preview": (1_048_576, 65_536),
    "gemini-2.5-flash": (1_048_576, 65_536),
    "gemini-2.5-pro": (1_048_576, 65_536),
}


@dataclass
class Fault:
    kind: str
    times: int = 1
    retry_delay: str | None = None  # RetryInfo.retryDelay, e.g. "2s" (rate_limit, daily_quota)
    delay: float = 0.0  # seconds before answering (slow)
    when: str | None = None  # only requests whose transcription contains this text


@dataclass
class Call:
    """One request the server received."""

    # generate | upload_start | upload | file_get | file_delete | model_get | batch_create |
    # batch_get | batch_cancel | batch_request (one request of a job) | file_download | unknown
    kind: str
    method: str
    path: str
    headers: dict[str, str]
    at: float
    api_key: str | None
    body: Any = None
    model: str | None = None
    texts: list[str] = field(default_factory=list)  # the pages it "transcribed" (generate)
    media: list[str] = field(default_factory=list)  # "inline:<mime>" | "file:<mime>" per part
    status: int = 0
    fault: str | None = None

    @property
    def generation_config(self) -> dict[str, Any]:
        body = self.body if isinstance(self.body, dict) else {}
        return dict(body.get("generationConfig") or body.get("generation_config") or {})

    @property
    def thinking(self) -> dict[str, Any]:
        """generationConfig.thinkingConfig with its keys in camelCase: the SDK sends
        thinkingBudget but thinking_level, and the API (proto JSON) reads both spellings."""
        gen = self.generation_config
        found = gen.get("thinkingConfig") or gen.get("thinking_config") or {}
        return {_camel(k): v for k, v in found.items()}


class FakeGemini:
    """The server and its scriptable behaviour; every request is recorded in ``calls``."""

    def __init__(self, image_text: str = "text of the image") -> None:
        self.image_text = image_text
        self.valid_keys: set[str] = set()  # empty: any key is accepted
        self.forbidden_keys: set[str] = set()
        self.models = dict(MODELS)
        self.retired: set[str] = set()  # known ids now answered 404, as after a shutdown
        self.batch = FakeBatches(self)  # the Batch API
        self.processing_polls = 0  # files.get answers PROCESSING this many times first
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeGemini:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, kind: str, times: int = 1, *, retry_delay: str | None = None,
               delay: float = 0.0, when: str | None = None) -> None:
        """Make the next ``times`` generateContent requests (matching ``when``) fail so."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {FAULTS}")
        with self.lock:
            self.faults.append(Fault(kind, times, retry_delay, delay, when))

    def generate_calls(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.kind == "generate"]

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.faults.clear()

    # --- behaviour -------------------------------------------------------------------

    def take_fault(self, texts: list[str]) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.when is None or any(fault.when in t for t in texts):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def auth_error(self, key: str | None) -> tuple[int, dict[str, Any]] | None:
        if key is None:
            return 403, error_body(
                403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers "
                "without established identity). Please use API Key or other form of API "
                "consumer identity to call this API.")
        if key in self.forbidden_keys:
            return 403, forbidden_body(key)
        if self.valid_keys and key not in self.valid_keys:
            return 400, bad_key_body()
        return None

    def model_error(self, model: str | None) -> tuple[int, dict[str, Any]] | None:
        if model in self.models and model not in self.retired:
            return None
        return 404, error_body(404, "NOT_FOUND", f"models/{model} is not found for API "
                               f"version v1beta, or is not supported for generateContent. "
                               f"Call ListModels to see the list of available models and "
                               f"their supported methods.")

    def thinking_error(self, call: Call) -> tuple[int, dict[str, Any]] | None:
        """What the API answers to a thinking setting the model does not take."""
        model, thinking = call.model or "", call.thinking
        level, budget = thinking.get("thinkingLevel"), thinking.get("thinkingBudget")
        if level is not None and budget is not None:
            message = "You can only set only one of thinking budget and thinking level."
        elif level is not None and model.startswith(("gemini-1", "gemini-2")):
            message = "Thinking level is not supported for this model."
        elif level == "MINIMAL" and "-pro" in model:
            message = "Thinking level MINIMAL is not supported for this model."
        elif budget == 0 and "-pro" in model:
            message = "Budget 0 is invalid. This model only works in thinking mode."
        else:
            return None
        return 400, error_body(400, "INVALID_ARGUMENT", message)

    def model_get(self, call: Call, model: str) -> tuple[int, Any]:
        """models.get: the model's description with its token limits."""
        auth = self.auth_error(call.api_key)
        if auth:
            return auth
        error = self.model_error(model)
        if error:
            return 404, error_body(404, "NOT_FOUND", f"Model models/{model} not found.")
        limits = self.models[model]
        return 200, {"name": f"models/{model}", "version": "001", "displayName": model,
                     "inputTokenLimit": limits[0], "outputTokenLimit": limits[1],
                     "supportedGenerationMethods": ["generateContent", "countTokens",
                                                    "batchGenerateContent"],
                     "temperature": 1, "topP": 0.95, "topK": 64, "thinking": True}

    def media_texts(self, body: dict[str, Any], call: Call) -> list[str]:
        texts: list[str] = []
        for content in body.get("contents") or []:
            for part in content.get("parts") or []:
                inline = part.get("inlineData") or part.get("inline_data")
                ref = part.get("fileData") or part.get("file_data")
                if inline:
                    mime = inline.get("mimeType") or inline.get("mime_type")
                    data = _b64decode(inline["data"])
                    call.media.append(f"inline:{mime}")
                elif ref:
                    uri = ref.get("fileUri") or ref.get("file_uri")
                    file = self.files[uri.rstrip("/").rsplit("/", 1)[-1]]
                    mime, data = file["mimeType"], file["data"]
                    call.media.append(f"file:{mime}")
                else:
                    continue
                texts += pdf_texts(data) if mime == "application/pdf" else [self.image_text]
        return texts

    def answer(self, call: Call, texts: list[str], fault: Fault | None) -> dict[str, Any]:
        """What a model that follows our transcription prompt would answer."""
        pages = [t.strip() for t in texts]
        if len(pages) == 1:
            text = pages[0]
        else:
            join = "\n\n" if fault and fault.kind == "merge_pages" else f"\n{PAGE_BREAK}\n"
            text = join.join(p or BLANK for p in pages)
        finish = "STOP"
        limit = int(call.generation_config.get("maxOutputTokens")
                    or call.generation_config.get("max_output_tokens") or 1 << 30)
        if fault and fault.kind == "max_tokens":
            limit = max(1, len(text) // 8)
        if len(text) > limit * 4:  # about 4 characters a token
            text, finish = text[:limit * 4], "MAX_TOKENS"
        prompt_tokens = TOKENS_PER_PAGE * max(1, len(pages)) + 100
        thoughts = self.thoughts(call)
        candidate: dict[str, Any] = {"index": 0, "finishReason": finish}
        if fault and fault.kind in ("recitation", "safety"):
            candidate["finishReason"] = fault.kind.upper()
            if fault.kind == "safety":
                candidate["safetyRatings"] = [{
                    "category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH",
                    "blocked": True}]
            else:
                candidate["citationMetadata"] = {"citationSources": [
                    {"startIndex": 0, "endIndex": 40, "uri": "https://example.org/book"}]}
        elif text:
            candidate["content"] = {"role": "model", "parts": [{"text": text}]}
        else:  # a blank page: the model answers nothing at all
            candidate["content"] = {"role": "model"}
        return {
            "candidates": [candidate],
            "usageMetadata": usage_metadata(prompt_tokens, len(text) // 4, thoughts),
            "modelVersion": call.model,
            "responseId": uuid.uuid4().hex[:20],
        }

    @staticmethod
    def thoughts(call: Call) -> int:
        """Thinking tokens a model spends at the request's thinking setting (none at
        MINIMAL or a zero budget; Gemini 3 models think by default)."""
        thinking = call.thinking
        level, budget = thinking.get("thinkingLevel"), thinking.get("thinkingBudget")
        if budget is not None:
            return max(0, min(int(budget), 300)) if int(budget) >= 0 else 300
        return THOUGHTS.get(str(level or "HIGH"), 0)

    def fault_error(self, fault: Fault, call: Call) -> tuple[int, dict[str, Any]] | None:
        model = call.model or "?"
        if fault.kind == "rate_limit":
            details = [quota_failure(PER_MINUTE_QUOTA_ID, model, "15"), HELP]
            if fault.retry_delay:
                details.append(retry_info(fault.retry_delay))
            return 429, error_body(429, "RESOURCE_EXHAUSTED", "You exceeded your current "
                                   "quota, please check your plan and billing details.",
                                   *details)
        if fault.kind == "daily_quota":
            details = [quota_failure(PER_DAY_QUOTA_ID, model, "1500"), HELP,
                       retry_info(fault.retry_delay or "41s")]
            return 429, error_body(429, "RESOURCE_EXHAUSTED", "You exceeded your current "
                                   "quota, please check your plan and billing details.",
                                   *details)
        simple = {
            "internal": (500, "INTERNAL", "An internal error has occurred. Please retry."),
            "unavailable": (503, "UNAVAILABLE", "The model is overloaded. Please try later."),
            "bad_gateway": (502, "UNAVAILABLE", "Bad Gateway"),
            "gateway_timeout": (504, "DEADLINE_EXCEEDED", "Deadline expired before operation "
                                "could complete."),
        }
        if fault.kind in simple:
            code, status, message = simple[fault.kind]
            return code, error_body(code, status, message)
        if fault.kind == "bad_key":
            return 400, bad_key_body()
        if fault.kind == "forbidden":
            return 403, forbidden_body(call.api_key)
        if fault.kind == "media_refused":
            return 400, error_body(400, "INVALID_ARGUMENT", f"Unsupported MIME type: "
                                   f"{call.media[0].split(':', 1)[-1]}")
        return None

    def generate(self, call: Call, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        auth = self.auth_error(call.api_key) or self.model_error(call.model)
        if auth:
            return auth
        refused = self.thinking_error(call)
        if refused:
            return refused
        try:
            texts = self.media_texts(body, call)
        except (KeyError, ValueError) as exc:
            return 400, error_body(400, "INVALID_ARGUMENT", f"Invalid request: {exc}")
        call.texts = texts
        fault = self.take_fault(texts)
        if fault:
            call.fault = fault.kind
            if fault.delay:
                time.sleep(fault.delay)
            error = self.fault_error(fault, call)
            if error:
                return error
        return 200, self.answer(call, texts, fault)

    def upload_start(self, call: Call, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        auth = self.auth_error(call.api_key)
        if auth:
            return auth[0], auth[1], {}
        if call.headers.get("x-goog-upload-protocol") != "resumable":
            return 400, error_body(400, "INVALID_ARGUMENT", "resumable uploads only"), {}
        upload_id = uuid.uuid4().hex
        meta = (body or {}).get("file") or {}
        with self.lock:
            self.uploads[upload_id] = {
                "size": int(call.headers.get("x-goog-upload-header-content-length", "0")),
                "mime": call.headers.get("x-goog-upload-header-content-type")
                or meta.get("mimeType"),
                "data": b"",
            }
        version = _UPLOAD.match(call.path).group("version")  # type: ignore[union-attr]
        url = f"{self.url}/upload/{version}/files?upload_id={upload_id}&upload_protocol=resumable"
        return 200, None, {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"}

    def upload_chunk(self, call: Call, data: bytes,
                     upload_id: str) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            upload = self.uploads.get(upload_id)
            if upload is None:
                return 404, error_body(404, "NOT_FOUND", "no such upload"), {}
            offset = int(call.headers.get("x-goog-upload-offset", "0"))
            if offset != len(upload["data"]):
                return 400, error_body(400, "INVALID_ARGUMENT", "bad offset"), {}
            upload["data"] += data
            command = call.headers.get("x-goog-upload-command", "")
            if "finalize" not in command:
                return 200, None, {"X-Goog-Upload-Status": "active"}
            file_id = uuid.uuid4().hex[:12]
            version = _UPLOAD.match(call.path).group("version")  # type: ignore[union-attr]
            self.files[file_id] = {
                "name": f"files/{file_id}", "mimeType": upload["mime"],
                "sizeBytes": str(len(upload["data"])),
                "uri": f"{self.url}/{version}/files/{file_id}",
                "state": "PROCESSING" if self.processing_polls else "ACTIVE",
                "source": "UPLOADED", "data": upload["data"], "polls": 0,
            }
            del self.uploads[upload_id]
            return 200, {"file": self.public(file_id)}, {"X-Goog-Upload-Status": "final"}

    def public(self, file_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.files[file_id].items() if k not in ("data", "polls")}

    def file_get(self, call: Call, file_id: str) -> tuple[int, Any]:
        auth = self.auth_error(call.api_key)
        if auth:
            return auth
        with self.lock:
            file = self.files.get(file_id)
            if file is None:
                return 404, error_body(404, "NOT_FOUND", f"File {file_id} not found.")
            file["polls"] += 1
            if file["polls"] > self.processing_polls:
                file["state"] = "ACTIVE"
            return 200, self.public(file_id)


@contextlib.contextmanager
def running(image_text: str = "text of the image") -> Iterator[FakeGemini]:
    fake = FakeGemini(image_text).start()
    try:
        yield fake
    finally:
        fake.stop()
