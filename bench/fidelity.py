"""Fidelity: how close our text is to poppler's and to ground truth, over the shared corpus.

1. Every readable text PDF of ../shared/corpus (MANIFEST kind text-pdf, with a pdftotext
   reference, opening with the empty password): character agreement (tests/cer.py) of the
   `auto` engine's text, and of each extractor alone (pypdfium2, pypdf, pdftotext), with the
   reference; their median, minimum and count below 0.85; documents with control characters.
2. Every scan with ground truth (scanned PDFs and images): CER of our tesseract engine and of
   the plain tesseract CLI (PDF pages rendered at 300 dpi with pdftoppm).
3. The quality check's cost: the text-layer path (extractors.read) against pypdfium2's text
   alone (no object count, no check) on documents whose pages all pass, as a share.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rows import emit  # noqa: E402

from ocr_daemon import config  # noqa: E402
from ocr_daemon.engines.base import EngineContext, Page, PageRequest, PageText  # noqa: E402
from ocr_daemon.engines.registry import REGISTRY  # noqa: E402
from ocr_daemon.errors import OcrDaemonError  # noqa: E402
from ocr_daemon.formats import extractors, pdf, poppler, textlayer  # noqa: E402
from ocr_daemon.formats.sniff import PDF, sniff  # noqa: E402
from tests.cer import agreement, cer  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
TARGET = 0.85


def manifest() -> list[dict[str, str]]:
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def has_controls(text: str) -> bool:
    return any(textlayer.bad_char(ch) and ch < "\ue000" for ch in text if ch != "\ufffd")


def engine(name: str, tmp: Path) -> object:
    cfg = config.parse({"watches": [{"name": "b", "root": str(tmp / "w"), "engine": name}],
                        "engines": {"gemini": {"api_key_env": "OCRD_BENCH_NO_KEY"}}}, tmp)
    return REGISTRY[name](EngineContext(cfg, cfg.watches[0]))


def extract_pages(eng: object, path: Path, mime: str, pages: int) -> list[PageText]:
    request = PageRequest(path, mime, tuple(Page(n, n - 1) for n in range(1, pages + 1)))
    return list(eng.extract(request).pages)  # type: ignore[attr-defined]


def extract(eng: object, path: Path, mime: str, pages: int) -> str:
    return "\f".join(p.text for p in extract_pages(eng, path, mime, pages))


ALONE = {
    "pypdfium2": lambda path, idx: pdf.page_texts(path, idx),
    "pypdf": lambda path, idx: [textlayer.clean(t or "") for t in pdf.pypdf_texts(path, idx)],
    "pdftotext": lambda path, idx: [textlayer.clean(t or "") for t in poppler.page_texts(path,
                                                                                         idx)],
}


def reference_fails(path: Path, pages: int, reference: str) -> str | None:
    """Why pdftotext's reading of ``path`` is no reference, if it is none: empty, or pages
    that fail our own quality check (glyph codes, most glyphs dropped)."""
    if not textlayer.visible_count(reference):
        return "reference empty"
    ref_pages = reference.split("\f")
    facts = pdf.page_layers(path, list(range(pages)))
    failing = sum(1 for i, (raw, objects) in enumerate(facts) if i < len(ref_pages)
                  and textlayer.assess(ref_pages[i], objects, 1,
                                       glyphs=textlayer.visible_count(raw)).state
                  == textlayer.BROKEN)
    return f"{failing} reference pages fail the check" if failing else None


def text_pdfs(rows: list[dict[str, str]], tmp: Path, limit: int | None,
              only: str | None = None) -> list[tuple[str, str]]:
    auto = engine("auto", tmp)
    table: list[tuple[str, str]] = []
    scores: dict[str, list[float]] = {"auto": [], "auto, text-layer pages": [],
                                      **{k: [] for k in ALONE}}
    seconds: dict[str, float] = {k: 0.0 for k in ALONE}
    controls: list[str] = []
    chosen = [r for r in rows if "text-pdf" in r["kind"] and r["pdftotext_reference"]
              and (only is None or only in r["path"])]
    untrusted: list[str] = []
    for row in chosen[:limit]:
        path = CORPUS / row["path"]
        reference = (CORPUS / row["pdftotext_reference"]).read_text(encoding="utf-8")
        try:
            pages = pdf.count_pages(path, 10_000)
        except OcrDaemonError as exc:
            print(f"  skip {row['path']}: {exc.code}")
            continue
        out = extract_pages(auto, path, PDF, pages)
        text = "\f".join(p.text for p in out)
        score = agreement(text, reference)
        scores["auto"].append(score)
        # The pages our text layer produced against the same pages of the reference (where
        # auto OCRed a page, pdftotext's reading of its broken layer is no reference).
        ref_pages = reference.split("\f")
        layer = [i for i, p in enumerate(out) if p.extractor and i < len(ref_pages)]
        ocred = sum(1 for p in out if p.extractor is None and p.text_layer == "broken")
        scores["auto, text-layer pages"].append(agreement(
            "".join(out[i].text for i in layer), "".join(ref_pages[i] for i in layer)))
        if has_controls(text):
            controls.append(row["path"])
        alone = {}
        for name, read in ALONE.items():
            started = time.perf_counter()
            alone[name] = agreement("\f".join(read(path, list(range(pages)))), reference)
            seconds[name] += time.perf_counter() - started
            scores[name].append(alone[name])
        if score < TARGET:
            why = reference_fails(path, pages, reference)
            truth = row["expected_text"] and (CORPUS / row["expected_text"]).read_text(
                encoding="utf-8")
            print(f"  below {TARGET}: {why or 'the reference passes the check'}"
                  + (f"; agreement with the corpus's own expected text "
                     f"{agreement(text, truth):.3f}" if truth else ""))
            if why:
                untrusted.append(row["path"])
        print(f"  {score:5.3f} auto ({scores['auto, text-layer pages'][-1]:5.3f} layer pages, "
              f"{ocred} broken pages OCRed) | "
              + " ".join(f"{alone[n]:5.3f} {n}" for n in ALONE)
              + f" | {pages:3d} p {row['path']}", flush=True)
    for name, values in scores.items():
        below = sum(1 for v in values if v < TARGET)
        time_note = f", {seconds[name]:.1f} s in all" if name in seconds else ""
        print(f"{name:>22}: {len(values)} documents, median {statistics.median(values):.3f}, "
              f"minimum {min(values):.3f}, {below} below {TARGET}{time_note}")
    print(f"documents with control characters in auto's text: {len(controls)} {controls}")
    values = scores["auto"]
    below = sum(1 for v in values if v < TARGET)
    table += [
        ("fidelity: text PDFs vs pdftotext, median / min agreement",
         f"{statistics.median(values):.3f} / {min(values):.3f} ({len(values)} docs)", "", None),
        ("fidelity: text PDFs below 0.85 agreement", str(below), "0", below == 0),
        ("fidelity: of those, with a pdftotext reference that passes our check",
         str(below - len(untrusted)), "0", below == len(untrusted)),
        ("fidelity: same, pages read from the text layer only",
         str(sum(1 for v in scores["auto, text-layer pages"] if v < TARGET)), "", None),
        ("fidelity: documents with control characters", str(len(controls)), "0",
         not controls),
    ]
    return table


def plain_tesseract(path: Path, mime: str, tmp: Path) -> str:
    """The tesseract CLI as a user would run it: an image as is; a PDF's pages rendered at
    300 dpi by pdftoppm."""
    if mime != PDF:
        return subprocess.run(["tesseract", str(path), "stdout"], capture_output=True,
                              check=True).stdout.decode()
    prefix = tmp / "page"
    for old in tmp.glob("page*"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "300", "-gray", "-png", str(path), str(prefix)],
                   check=True)
    return "\f".join(subprocess.run(["tesseract", str(img), "stdout"], capture_output=True,
                                    check=True).stdout.decode()
                     for img in sorted(tmp.glob("page*.png")))


def scans(rows: list[dict[str, str]], tmp: Path) -> list[tuple[str, str]]:
    ours_engine = engine("tesseract", tmp)
    worst = 0.0
    lines = []
    for row in rows:
        kinds = row["kind"].split(",")
        if not row["expected_text"] or not {"scanned-pdf", "image"} & set(kinds):
            continue
        path = CORPUS / row["path"]
        truth = (CORPUS / row["expected_text"]).read_text(encoding="utf-8")
        mime = sniff(path)
        try:
            pages = pdf.count_pages(path, 100) if mime == PDF else 1
            ours = cer(extract(ours_engine, path, mime, pages), truth)
            plain = cer(plain_tesseract(path, mime, tmp / "render"), truth)
        except (OcrDaemonError, subprocess.CalledProcessError) as exc:
            print(f"  skip {row['path']}: {exc}")
            continue
        worst = max(worst, ours - plain)
        lines.append(f"{ours:.3f}/{plain:.3f}")
        print(f"  CER ours {ours:.3f} plain CLI {plain:.3f} ({(ours - plain) * 100:+.1f} "
              f"points) {row['path']}", flush=True)
    return [("fidelity: scans' CER, ours/plain tesseract", ", ".join(lines), "", None),
            ("fidelity: worst CER difference vs plain tesseract", f"{worst * 100:+.1f} points",
             "<= +1 point", worst <= 0.01)]


def check_cost(rows: list[dict[str, str]], rounds: int) -> list[tuple[str, str]]:
    docs = []
    for row in rows:
        if "text-pdf" not in row["kind"]:
            continue
        path = CORPUS / row["path"]
        try:
            pages = pdf.count_pages(path, 10_000)
        except OcrDaemonError:
            continue
        if all(p.extractor == "pypdfium2" for p in extractors.read(path, list(range(pages)), 1)):
            docs.append((path, list(range(pages))))
    # CPU time of this process (the machine is shared: wall time swings by 50 %), the best
    # of the rounds for each document, the two paths alternated.
    base = checked = full = 0.0
    for path, indices in docs:
        best = [float("inf")] * 3
        for _ in range(rounds):
            started = time.process_time()
            [textlayer.clean(t) for t, _ in pdf.page_layers(path, indices, count_objects=False)]
            first = time.process_time()
            extractors.read(path, indices, 1, chain=[])  # the check, no second extractor
            second = time.process_time()
            extractors.read(path, indices, 1)  # and the others for pages with glyph codes
            third = time.process_time()
            best = [min(b, t) for b, t in zip(best, (first - started, second - first,
                                                     third - second), strict=True)]
        base += best[0]
        checked += best[1]
        full += best[2]
    share = (checked - base) / checked
    pages = sum(len(i) for _, i in docs)
    print(f"quality check: {len(docs)} documents, {pages} pages, best of {rounds}: text alone "
          f"{base:.2f} s CPU, with the check {checked:.2f} s CPU: {share * 100:.1f} % of the "
          f"path; with pypdf and pdftotext offered pages holding glyph codes {full:.2f} s CPU (+"
          f"{(full - checked) / checked * 100:.0f} %; its child process's CPU not counted)")
    return [("fidelity: quality check's share of the text-layer path",
             f"{share * 100:.1f} % ({pages} pages)", "<= 5 %", share <= 0.05)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="first 10 text PDFs, no scans")
    parser.add_argument("--only", help="only the text PDFs whose path contains this")
    parser.add_argument("--part", action="append", choices=["text", "cost", "scans"],
                        help="only this part (repeatable); default: all three")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the cost timing")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        sys.exit(f"no corpus at {CORPUS}")
    rows = manifest()
    print(f"pdftotext: {'yes' if poppler.available() else 'NOT INSTALLED'}, poppler-data: "
          f"{'yes' if poppler.reads_cjk() else 'no'}")
    parts = args.part or ["text", "cost", "scans"]
    table: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "render").mkdir()
        if "text" in parts:
            table += text_pdfs(rows, tmp, 10 if args.quick else None, args.only)
        if "cost" in parts and not args.only:
            table += check_cost(rows, 2 if args.quick else args.rounds)
        if "scans" in parts and not args.quick and not args.only:
            table += scans(rows, tmp)
    emit(table)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
