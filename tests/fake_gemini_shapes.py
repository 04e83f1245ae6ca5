"""What the fake Gemini server sends: google.rpc error bodies, usageMetadata, page texts."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import pypdfium2

from ocr_daemon.formats.pdf import PDFIUM_LOCK


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _b64decode(data: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (clients send either)."""
    padded = data + "=" * (-len(data) % 4)
    try:
        if "-" in data or "_" in data:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bad base64: {exc}") from exc


def pdf_texts(data: bytes) -> list[str]:
    """The real text layer of every page (what a perfect transcription would return)."""
    with PDFIUM_LOCK:  # pdfium is not thread-safe: this server answers requests in threads
        doc = pypdfium2.PdfDocument(data)
        try:
            texts = []
            for page in doc:
                textpage = page.get_textpage()
                texts.append(textpage.get_text_bounded().replace("\r\n", "\n")
                             .replace("\r", "\n"))
                textpage.close()
                page.close()
            return texts
        finally:
            doc.close()


def usage_metadata(prompt: int, output: int, thoughts: int) -> dict[str, Any]:
    """usageMetadata as the API sends it (thoughtsTokenCount only when the model thought)."""
    usage: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": output,
                             "totalTokenCount": prompt + output + thoughts,
                             "promptTokensDetails": [{"modality": "DOCUMENT",
                                                      "tokenCount": prompt}]}
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def error_body(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    """A google.rpc.Status error as the Gemini API returns it."""
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = list(details)
    return {"error": body}


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def quota_failure(quota_id: str, model: str, value: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": value,
    }]}


HELP = {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
    "description": "Learn more about Gemini API quotas",
    "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}


def bad_key_body() -> dict[str, Any]:
    message = "API key not valid. Please pass a valid API key."
    return error_body(400, "INVALID_ARGUMENT", message, {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }, {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
        "message": message})


def forbidden_body(key: str | None) -> dict[str, Any]:
    # The real API names the consumer, key included: clients must not log this verbatim.
    return error_body(403, "PERMISSION_DENIED",
                      f"Permission denied: Consumer 'api_key:{key}' has been suspended.", {
                          "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                          "reason": "CONSUMER_SUSPENDED", "domain": "googleapis.com",
                          "metadata": {"consumer": f"projects/{key}",
                                       "service": "generativelanguage.googleapis.com"}})
