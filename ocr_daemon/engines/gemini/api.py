"""The google-genai adapter: one generateContent exchange (inline or File API), errors made ours.

This is the boundary to the SDK: whatever it raises becomes one of our errors here, chained
``from None`` so the SDK's own text (which can quote the key, as a 403 "Consumer 'api_key:…'"
does) never reaches a log or a sidecar; our messages pass through ``clean`` first. The SDK's
own retries are off (no retry_options): the retry policy is ours (gemini_send).
"""

from __future__ import annotations

import importlib
import io
import re
import time
from collections.abc import Sequence
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from ocr_daemon.config import GeminiConfig
from ocr_daemon.engines.gemini.exchange import Answer, Tokens, Variant
from ocr_daemon.engines.gemini.media import Media, request_bytes
from ocr_daemon.errors import (
    KeyRejected,
    OcrDaemonError,
    PageFailed,
    QuotaExhausted,
    RateLimited,
    ServerError,
    SettingRefused,
)

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
SAFETY_CATEGORIES = (
    types.HarmCategory.HARM_CATEGORY_HARASSMENT,
    types.HarmCategory.HARM_CATEGORY_HATE_SPEECH,
    types.HarmCategory.HARM_CATEGORY_SEXUALLY_EXPLICIT,
    types.HarmCategory.HARM_CATEGORY_DANGEROUS_CONTENT,
)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Timeouts and connection errors of the HTTP library the SDK uses (httpx or httpx2)."""
    found: list[type[BaseException]] = []
    for name in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except ImportError:
            continue
    return tuple(found)


TRANSPORT_ERRORS = _transport_errors()


def parse_duration(value: Any) -> float | None:
    """A google.protobuf.Duration as JSON ("2s", "0.5s") or as {seconds, nanos}."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)s\s*", value)
        return float(match.group(1)) if match else None
    if isinstance(value, dict):
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
    return None


def _details(exc: genai_errors.APIError) -> list[dict[str, Any]]:
    body = exc.details if isinstance(exc.details, dict) else {}
    inner = body.get("error", body)
    found = inner.get("details") if isinstance(inner, dict) else None
    return [d for d in found or [] if isinstance(d, dict)]


class GeminiApi:
    def __init__(self, api_key: str, settings: GeminiConfig) -> None:
        self._key = api_key
        self.s = settings
        options = types.HttpOptions(base_url=settings.base_url,
                                    timeout=int(settings.timeout * 1000))
        self.client = genai.Client(api_key=api_key, vertexai=False, http_options=options)

    def clean(self, text: str, limit: int = 300) -> str:
        """A server's or library's text, safe to log: the key masked, length bounded."""
        text = text.replace(self._key, "***") if self._key else text
        return text if len(text) <= limit else text[:limit] + "…"

    def generate(self, media: Sequence[Media], prompt: str, variant: Variant,
                 max_output_tokens: int) -> Answer:
        uploaded: list[str] = []
        try:
            if request_bytes(media, prompt) > self.s.inline_max_bytes:
                parts = [self._upload(m, uploaded) for m in media]
            else:
                parts = [types.Part.from_bytes(data=m.data, mime_type=m.mime) for m in media]
            response = self.client.models.generate_content(
                model=self.s.model,
                contents=[types.Content(role="user",
                                        parts=[*parts, types.Part.from_text(text=prompt)])],
                config=self.config(variant, max_output_tokens))
            return answer_of(response)
        except OcrDaemonError:
            raise
        except Exception as exc:  # the adapter boundary: the SDK's errors become ours
            raise self.ours(exc) from None
        finally:
            for name in uploaded:
                self._delete(name)

    def model_info(self) -> types.Model:
        """models.get of the configured model: its token limits (and whether key and model
        are accepted: the errors are those of a request)."""
        try:
            return self.client.models.get(model=self.s.model)
        except Exception as exc:  # the adapter boundary: the SDK's errors become ours
            raise self.ours(exc) from None

    def config(self, variant: Variant, max_output_tokens: int) -> types.GenerateContentConfig:
        safety = ([types.SafetySetting(category=c, threshold=types.HarmBlockThreshold.BLOCK_NONE)
                   for c in SAFETY_CATEGORIES] if variant.relaxed else None)
        return types.GenerateContentConfig(
            temperature=variant.temperature,
            seed=variant.seed,
            candidate_count=1,
            max_output_tokens=max_output_tokens,
            thinking_config=self._thinking(),
            safety_settings=safety,
        )

    def _thinking(self) -> types.ThinkingConfig:
        budget, level = self.s.thinking()
        if level is not None:
            return types.ThinkingConfig(thinking_level=types.ThinkingLevel(level.upper()))
        return types.ThinkingConfig(thinking_budget=budget)

    def _upload(self, media: Media, uploaded: list[str]) -> types.Part:
        """The File API: resumable upload, then wait while the file is PROCESSING."""
        file = self.client.files.upload(file=io.BytesIO(media.data), config=types.UploadFileConfig(
            mime_type=media.mime, display_name="ocr-daemon chunk"))
        if file.name:
            uploaded.append(file.name)
        deadline, pause = time.monotonic() + self.s.timeout, 0.2
        while file.state == types.FileState.PROCESSING:
            if time.monotonic() > deadline:
                raise ServerError("the File API is still processing the upload")
            time.sleep(pause)
            pause = min(2.0, pause * 2)
            file = self.client.files.get(name=file.name or "")
        if file.state == types.FileState.FAILED or not file.uri:
            raise ServerError(f"the File API could not process the upload "
                              f"({self.clean(str(file.error))})")
        return types.Part.from_uri(file_uri=file.uri, mime_type=media.mime)

    def _delete(self, name: str) -> None:
        try:
            self.client.files.delete(name=name)
        except Exception:  # best effort: uploads expire by themselves after 48 hours
            return

    def ours(self, exc: Exception) -> OcrDaemonError:
        if isinstance(exc, genai_errors.APIError):
            return self._api_error(exc)
        if TRANSPORT_ERRORS and isinstance(exc, TRANSPORT_ERRORS):
            kind = "timed out" if "Timeout" in type(exc).__name__ else "connection failed"
            return ServerError(f"Gemini request {kind} ({type(exc).__name__}: "
                               f"{self.clean(str(exc))})")
        return ServerError(f"Gemini request failed ({type(exc).__name__}: "
                           f"{self.clean(str(exc))})")

    def _api_error(self, exc: genai_errors.APIError) -> OcrDaemonError:
        code, status = int(exc.code or 0), str(exc.status or "")
        details = _details(exc)
        what = f"{code} {status}: {self.clean(str(exc.message or ''))}"
        reasons = {str(d.get("reason")) for d in details if d.get("@type") == ERROR_INFO}
        if code == 429:
            delay = next((parse_duration(d.get("retryDelay")) for d in details
                          if d.get("@type") == RETRY_INFO), None)
            daily = [str(v.get("quotaId")) for d in details if d.get("@type") == QUOTA_FAILURE
                     for v in d.get("violations") or [] if "PerDay" in str(v.get("quotaId"))]
            if daily:
                return QuotaExhausted(f"Gemini daily quota exhausted ({what})",
                                      quota_id=daily[0], retry_after=delay)
            return RateLimited(f"Gemini rate limit ({what})", retry_after=delay)
        key_refused = (code in (401, 403) or "API_KEY_INVALID" in reasons
                       or status == "FAILED_PRECONDITION"
                       or (code == 400 and "api key" in what.lower()))
        if key_refused:
            reason = " ".join([str(code), *sorted(reasons)]) if reasons else f"{code} {status}"
            return KeyRejected(f"Gemini refused the API key ({what}); check the API key",
                               reason=reason)
        refused = self._refused(code, status, what)
        if refused is not None:
            return refused
        if code == 404:  # a File API upload gone: upload it again
            return ServerError(f"Gemini: not found ({what})")
        if code == 408 or code >= 500:
            return ServerError(f"Gemini server error ({what})")
        if code in (400, 413):
            return PageFailed(f"Gemini rejected the request ({what})",
                              hint="Check the file, and engines.gemini settings such as model, "
                                   "thinking_budget and max_output_tokens.")
        return ServerError(f"Gemini error ({what})")


    def _refused(self, code: int, status: str, what: str) -> SettingRefused | None:
        """A configuration the API refuses for every request: the model (not found, retired,
        cannot read our media) or its thinking setting. Recognised from code and message."""
        text = what.lower()
        if code == 404 and "model" in text:
            return SettingRefused(f"Gemini model {self.s.model!r} is not found or retired "
                                  f"({what})", key="engines.gemini.model",
                                  reason="model_not_found")
        if code != 400 or status not in ("INVALID_ARGUMENT", ""):
            return None
        if "thinking" in text or "budget" in text:
            key = ("engines.gemini.thinking_budget" if self.s.thinking_budget is not None
                   else "engines.gemini.thinking_level")
            budget, level = self.s.thinking()
            said = f"thinking_level {level!r}" if level else f"thinking_budget {budget}"
            return SettingRefused(f"Gemini model {self.s.model!r} refuses {said} ({what})",
                                  key=key, reason="thinking_refused")
        if "mime type" in text or "media" in text or "modality" in text:
            return SettingRefused(f"Gemini model {self.s.model!r} does not read the media "
                                  f"ocr-daemon sends, PDF or images ({what})",
                                  key="engines.gemini.model", reason="media_refused")
        return None


def _name(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def tokens_of(usage: types.GenerateContentResponseUsageMetadata | None) -> Tokens:
    if usage is None:
        return Tokens()
    prompt, output = usage.prompt_token_count or 0, usage.candidates_token_count or 0
    thinking = usage.thoughts_token_count or 0
    return Tokens(prompt, output, thinking, usage.total_token_count or prompt + output + thinking)


def answer_of(response: types.GenerateContentResponse) -> Answer:
    tokens = tokens_of(response.usage_metadata)
    if not response.candidates:
        feedback = response.prompt_feedback
        reason = _name(feedback.block_reason) if feedback else ""
        return Answer("", f"BLOCKED_{reason or 'UNKNOWN'}", tokens)
    candidate = response.candidates[0]
    finish = _name(candidate.finish_reason) or "STOP"
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    return Answer(text, finish, tokens)
