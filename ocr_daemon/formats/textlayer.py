"""Text-layer hygiene: one way to write hyphens and line ends, and a cheap broken-text check."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# pdfium marks a hyphen it found at a line end (a word split across lines) with U+0002 and
# drops the line break; pdftotext joins such words too. Every extractor's text is written
# the same way: a word hyphenated at a line end is joined ("com-\npany" -> "company"), a
# hyphen before a capital, a digit or a blank line is kept with its line break.
PDFIUM_HYPHEN = "\x02"
_LINE_END_HYPHEN = re.compile(r"(?<=[^\W\d_])-\n([^\W\d_])")
# Other C0/C1 controls in a text layer are glyph codes a font failed to map: never text.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# The quality check: a page fails when more than this share of its visible characters are
# controls, private-use or U+FFFD (glyphs with no Unicode meaning) ...
MAX_BAD_SHARE = 0.10
# ... or when it draws this many text objects but yields fewer characters than a quarter of
# them (each text object draws at least one glyph): the fonts have no ToUnicode map ...
MIN_OBJECTS_FOR_RATIO = 20
MIN_CHARS_PER_OBJECT = 0.25
# ... or when another extractor yields fewer than half the glyphs pdfium counted (pdfium
# counts a glyph it cannot map as a control character; others drop it silently).
MIN_GLYPHS_FOR_RATIO = 40
MIN_CHARS_PER_GLYPH = 0.5
# pypdf writes a glyph it cannot map as its name: /g18, /cid123, /uni00410042.
_GLYPH_NAMES = re.compile(r"/(?:g\d+|cid\d+|uni[0-9A-F]{4,})")

OK, NONE, BROKEN = "ok", "none", "broken"


def clean(raw: str) -> str:
    """An extractor's page text as we write it: \\n line ends, hyphens joined as above, no
    control characters but \\n and \\t (\\f separates pages in our .txt, so none inside)."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace(PDFIUM_HYPHEN + "\n", PDFIUM_HYPHEN).replace(PDFIUM_HYPHEN, "-\n")
    text = _LINE_END_HYPHEN.sub(_join, text)
    return _CONTROLS.sub("", text.replace("\f", "\n"))


def _join(match: re.Match[str]) -> str:
    """A line-end hyphen before a lowercase letter joins the word; before any other letter
    (a capital: Franco-German) it stays, with its line break."""
    after = match.group(1)
    return after if after.islower() else match.group(0)


# The characters bad_char() is true for, as one class for fast counting.
_BAD = re.compile("[\x00\x01\x03-\x08\x0b\x0e-\x1f\x7f-\x9f\ue000-\uf8ff\ufffd"
                  "\U000f0000-\U0010ffff]")


def visible_count(text: str) -> int:
    """How many characters of ``text`` are not ASCII whitespace (counted without copying)."""
    return len(text) - sum(map(text.count, " \n\r\t\f\v"))


def bad_char(ch: str) -> bool:
    """A character that is not text: a control (but \\t \\n \\r \\f), private use, U+FFFD."""
    if ch in "\t\n\r\f":
        return False
    if ch == PDFIUM_HYPHEN:
        return False  # pdfium's hyphen marker: mapped by clean()
    return ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co")


def bad_share(raw: str) -> tuple[int, int]:
    """How many of ``raw``'s visible characters are not text (bad_char, or part of a pypdf
    glyph name), and how many are visible."""
    names = sum(len(m) for m in _GLYPH_NAMES.findall(raw)) if "/" in raw else 0
    return (len(_BAD.findall(raw)) if _BAD.search(raw) else 0) + names, visible_count(raw)


@dataclass(frozen=True)
class Verdict:
    state: str  # OK, NONE (no text on the page) or BROKEN
    reason: str | None = None


def assess(raw: str, text_objects: int, min_chars: int, cid_unmapped: bool = False,
           glyphs: int = 0) -> Verdict:
    """The quality check for one page's raw extractor text.

    ``text_objects`` is the number of text objects pdfium sees drawn on the page, ``glyphs``
    the number of visible characters pdfium's own text has (mapped or not; 0 to skip);
    ``cid_unmapped`` says the page draws CJK text with a CID font that has no ToUnicode map,
    which only an extractor with the CID collections' tables (poppler-data) can read.
    """
    bad, visible = bad_share(raw)
    good = visible - bad
    if visible and bad / visible > MAX_BAD_SHARE:
        return Verdict(BROKEN, f"{bad} of {visible} characters are control, private-use "
                               "or replacement characters (unmapped glyph codes)")
    if text_objects >= MIN_OBJECTS_FOR_RATIO and good < MIN_CHARS_PER_OBJECT * text_objects:
        return Verdict(BROKEN, f"{good} characters for {text_objects} drawn text objects "
                               "(fonts without a ToUnicode map)")
    if glyphs >= MIN_GLYPHS_FOR_RATIO and good < MIN_CHARS_PER_GLYPH * glyphs:
        return Verdict(BROKEN, f"{good} characters for {glyphs} glyphs drawn (unmapped "
                               "glyphs dropped)")
    if cid_unmapped:
        return Verdict(BROKEN, "CJK text in a CID font without a ToUnicode map")
    if good < min_chars:
        return Verdict(NONE, None)
    return Verdict(OK, None)
