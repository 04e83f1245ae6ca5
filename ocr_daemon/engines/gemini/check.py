"""`ocr-daemon config check --online`: one models.get call says whether the key and model work."""

from __future__ import annotations

from dataclasses import dataclass

from ocr_daemon.config import GeminiConfig
from ocr_daemon.errors import KeyRejected, OcrDaemonError, SettingRefused


@dataclass(frozen=True)
class Verdict:
    ok: bool
    key: str  # "ok" | "rejected" | "not set" | "unknown"
    model: str  # "ok" | "not found" | "unknown"
    input_token_limit: int | None = None
    output_token_limit: int | None = None
    error: str | None = None
    hint: str | None = None

    def lines(self, model: str) -> list[str]:
        out = [f"gemini: API key {self.key}", f"gemini: model {model} {self.model}"]
        if self.input_token_limit is not None:
            out.append(f"gemini: input token limit {self.input_token_limit}, output token "
                       f"limit {self.output_token_limit}")
        if self.error:
            out.append(f"gemini: {self.error}")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return out


def check(settings: GeminiConfig) -> Verdict:
    """Ask the API about the configured model once (models.get) with the configured key."""
    from ocr_daemon.engines.gemini.api import GeminiApi
    from ocr_daemon.engines.gemini.engine import api_key

    try:
        key = api_key(settings)
    except OcrDaemonError as exc:
        return Verdict(False, "not set", "unknown", error=exc.message, hint=exc.hint)
    api = GeminiApi(key, settings)
    try:
        found = api.model_info()
    except KeyRejected as exc:
        return Verdict(False, "rejected", "unknown", error=exc.message, hint=exc.hint)
    except SettingRefused as exc:
        return Verdict(False, "ok", "not found", error=exc.message, hint=exc.hint)
    except OcrDaemonError as exc:
        return Verdict(False, "unknown", "unknown", error=exc.message, hint=exc.hint)
    return Verdict(True, "ok", "ok", found.input_token_limit, found.output_token_limit)
