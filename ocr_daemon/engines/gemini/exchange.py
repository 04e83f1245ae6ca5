"""What one Gemini exchange takes and gives back. No SDK import here: google-genai takes
0.7 s to import, paid only by a process that builds the gemini engine (gemini_api)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """Generation settings of one try; retries after a refusal vary them."""

    temperature: float = 0.0
    seed: int | None = None
    relaxed: bool = False  # safety filters off: the user's own document, transcribed


@dataclass(frozen=True)
class Answer:
    text: str
    finish: str  # STOP, MAX_TOKENS, RECITATION, SAFETY, ... or BLOCKED_<reason>
    prompt_tokens: int | None = None
