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
class Tokens:
    """A response's usageMetadata: what it billed."""

    prompt: int = 0
    output: int = 0  # candidatesTokenCount: the answer
    thinking: int = 0  # thoughtsTokenCount: billed as output
    total: int = 0


@dataclass(frozen=True)
class Answer:
    text: str
    finish: str  # STOP, MAX_TOKENS, RECITATION, SAFETY, ... or BLOCKED_<reason>
    tokens: Tokens = Tokens()
