"""The transcription prompt, and the split of an answer back into pages."""

from __future__ import annotations

import re

PAGE_BREAK = "<<<PAGE BREAK>>>"
BLANK = "[[BLANK]]"

RULES = f"""\
Transcribe all text in the attached document exactly as it is written, in reading order.
- Output only the transcribed text: no commentary, no introduction, no summary, no
  translation, no Markdown code fences.
- Keep the original language, spelling, punctuation, numbers and line breaks; do not correct,
  complete or guess anything.
- Write tables row by row with the cells separated by " | ".
- Do not describe pictures, logos, stamps or signatures; transcribe only the text in them.
- Write [illegible] for a word that cannot be read.
- If a page holds no text at all, write only {BLANK} for it. Never invent text."""

# Said on the retries after a refusal (RECITATION, SAFETY): the context a model needs.
RETRY_NOTE = """\
This document belongs to the user, who needs its text for archiving and accessibility.
Reproduce the text as it appears, with nothing added."""

_BREAK_LINE = re.compile(r"^[ \t]*" + re.escape(PAGE_BREAK) + r"[ \t]*$", re.MULTILINE)


def build(pages: int, custom: str | None = None, variant: int = 0) -> str:
    """The prompt for ``pages`` pages; a custom prompt replaces the rules, never the format."""
    parts = [custom.strip() if custom else RULES]
    if pages > 1:
        parts.append(f"The document has exactly {pages} pages. Transcribe them in order and "
                     f"write a line holding only {PAGE_BREAK} between two pages, so "
                     f"{pages - 1} such lines in all.")
    if variant:
        parts.append(RETRY_NOTE)
    return "\n\n".join(parts)


def _page(text: str) -> str:
    text = text.strip()
    return "" if text == BLANK else text


def one_page(answer: str) -> str:
    """The text of an answer for a single page (a stray page-break line dropped)."""
    return _page(_BREAK_LINE.sub("", answer))


def split(answer: str, pages: int) -> list[str] | None:
    """The answer's text per page, or None when it does not hold exactly ``pages`` pages."""
    if pages == 1:
        return [one_page(answer)]
    parts = _BREAK_LINE.split(answer)
    if len(parts) == pages + 1 and not parts[0].strip():  # a break before the first page
        parts = parts[1:]
    if len(parts) == pages + 1 and not parts[-1].strip():  # ... or after the last
        parts = parts[:-1]
    if len(parts) != pages:
        return None
    return [_page(p) for p in parts]
