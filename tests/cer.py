"""Character error rate: Levenshtein distance over whitespace-normalized text."""

from __future__ import annotations

import unicodedata


def normalize(text: str) -> str:
    """NFC, every run of whitespace (newlines, form feeds) made one space, ends trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), bit-parallel (Myers/Hyyrö).

    Python integers serve as bit vectors of any length, so this is O(len(a) * len(b) / 64)
    machine work rather than an O(len(a) * len(b)) Python loop.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    masks: dict[str, int] = {}
    for i, ch in enumerate(b):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(b)) - 1
    top = 1 << (len(b) - 1)
    pv, mv, score = full, 0, len(b)
    for ch in a:
        eq = masks.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | ~(xh | pv)
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return score


def cer(hypothesis: str, reference: str) -> float:
    """Edits needed to turn the normalized hypothesis into the reference, per reference char."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return levenshtein(hyp, ref) / len(ref)


def agreement(text: str, reference: str) -> float:
    """Character agreement: the share of characters two texts have in common, counted as
    multisets of NFKC characters without whitespace or invisible format characters (bidi
    marks pdftotext adds around Arabic; reading order and line breaks, where extractors
    legitimately differ, do not count either), over the longer text; 1.0 when both are
    empty."""
    from collections import Counter

    def chars(s: str) -> Counter[str]:
        return Counter(ch for ch in unicodedata.normalize("NFKC", s)
                       if not ch.isspace() and unicodedata.category(ch) != "Cf")

    a, b = chars(text), chars(reference)
    longer = max(sum(a.values()), sum(b.values()))
    if not longer:
        return 1.0
    return sum((a & b).values()) / longer
