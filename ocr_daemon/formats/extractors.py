"""The text-layer extractor chain: the first of pypdfium2, pypdf, pdftotext whose page passes.

Order (measured over the shared corpus with bench/fidelity.py, see README): pypdfium2 is the
fastest and agrees best with poppler on ordinary PDFs; pypdf reads fonts whose codes pdfium
returns as control characters; poppler's pdftotext (when installed, with poppler-data) reads
CJK CID fonts without a ToUnicode map that both others garble. A page no extractor passes
has no usable text layer: `auto` OCRs it, `pdftext` leaves it empty with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ocr_daemon.formats import pdf, poppler
from ocr_daemon.formats.textlayer import (
    BROKEN,
    NONE,
    OK,
    assess,
    bad_share,
    clean,
    visible_count,
)

FIRST = "pypdfium2"


@dataclass(frozen=True)
class LayerPage:
    text: str  # cleaned (textlayer.clean); "" unless state is OK
    extractor: str | None  # which extractor's text this is
    state: str  # OK: pypdfium2's text passed; BROKEN: it failed the check; NONE: no text
    reason: str | None = None  # why pypdfium2's text failed the check


Reader = Callable[[Path, list[int]], list[str | None]]


def fallbacks() -> list[tuple[str, Reader, bool]]:
    """The extractors tried after pypdfium2, in order: (name, reader, reads CJK CID fonts)."""
    chain: list[tuple[str, Reader, bool]] = [("pypdf", pdf.pypdf_texts, False)]
    if poppler.available():
        chain.append(("pdftotext", poppler.page_texts, poppler.reads_cjk()))
    return chain


_CJK = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def has_cjk(text: str) -> bool:
    """True when ``text`` holds CJK ideographs, kana or hangul."""
    return _CJK.search(text) is not None


def has_glyph_codes(raw: str) -> bool:
    """True when an extractor's raw text holds a control (but pdfium's hyphen marker and line
    ends), private-use character, U+FFFD or glyph name: a glyph it could not map."""
    return bad_share(raw)[0] > 0


def read(path: Path, indices: list[int], min_chars: int,
         chain: list[tuple[str, Reader, bool]] | None = None) -> list[LayerPage]:
    """The text layer of the given 0-based pages, each from the first extractor that passes
    (``chain``: the extractors after pypdfium2, by default ``fallbacks()``)."""
    facts = dict(zip(indices, pdf.page_layers(path, indices), strict=True))
    # Only pages with CJK text pay for the font inspection (pypdf opens the file).
    cjk = [i for i in indices if has_cjk(facts[i][0])]
    unmapped = dict(zip(cjk, pdf.cid_unmapped(path, cjk), strict=True)) if cjk else {}
    pages: dict[int, LayerPage] = {}
    suspect: dict[int, LayerPage] = {}  # passed, with a few glyph codes: kept if none is clean
    reasons: dict[int, str] = {}
    for i in indices:
        raw, objects = facts[i]
        verdict = assess(raw, objects, min_chars, unmapped.get(i, False))
        if verdict.state == OK and not has_glyph_codes(raw):
            pages[i] = LayerPage(clean(raw), FIRST, OK)
        elif verdict.state == OK:  # a few unmapped glyph codes: another may map them all
            suspect[i] = LayerPage(clean(raw), FIRST, OK)
            reasons[i] = "some glyphs without a Unicode mapping"
        elif verdict.state == NONE:
            pages[i] = LayerPage("", None, NONE)
        else:
            reasons[i] = verdict.reason or "broken"
    if len(pages) < len(indices) and chain is None:
        chain = fallbacks()
    for name, reader, reads_cjk in chain or []:
        # A page that passed with a few glyph codes is offered to both: pypdf reads Arabic
        # in logical order where pdftotext gives it reversed (habibi-oneline-cmap.pdf).
        pending = [i for i in indices if i not in pages]
        if not pending:
            break
        for i, raw_text in zip(pending, reader(path, pending), strict=True):
            if raw_text is None:
                continue
            verdict = assess(raw_text, facts[i][1], min_chars,
                             unmapped.get(i, False) and not reads_cjk,
                             visible_count(facts[i][0]))
            if verdict.state != OK:
                continue
            if i not in suspect:
                pages[i] = LayerPage(clean(raw_text), name, BROKEN, f"{FIRST}: {reasons[i]}")
            elif not has_glyph_codes(raw_text):
                pages[i] = LayerPage(clean(raw_text), name, OK, f"{FIRST}: {reasons[i]}")
    pages = {**suspect, **pages}
    for i in indices:
        pages.setdefault(i, LayerPage("", None, BROKEN, f"{FIRST}: {reasons.get(i)}; no other "
                                                         "extractor's text passed the check"))
    return [pages[i] for i in indices]
