"""Fakes and generators for tests and benchmarks (not offered to users as engines).

- ``make_text_pdf``: a real PDF with one text layer per page (Helvetica, WinAnsi).
- ``SleepingEngine``: stands in for a remote OCR API: fixed latency per request, with
  injectable faults (transient failures, permanent failures, a crash of the process).
- ``python -m ocr_daemon.testing worker --sleep 0.5 ...``: a worker using that engine.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocr_daemon.engines.base import Engine, EngineContext, Extraction, PageRequest, PageText
from ocr_daemon.errors import PageFailed, TransientEngineError


def _pdf_string(text: str) -> bytes:
    data = text.encode("cp1252", errors="replace")
    return b"(" + data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _content(text: str) -> bytes:
    if not text:
        return b""
    lines = [b"BT", b"/F1 11 Tf", b"14 TL", b"56 760 Td"]
    for line in text.split("\n"):
        lines.append(_pdf_string(line) + b" Tj T*")
    lines.append(b"ET")
    return b"\n".join(lines)


def make_text_pdf(path: Path, pages: list[str], compress: bool = True) -> Path:
    """Write a PDF whose page i has the text ``pages[i]`` (an empty string: a blank page)."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    kids = []
    for text in pages:
        stream = _content(text)
        extra = b""
        if compress and stream:
            stream, extra = zlib.compress(stream), b" /Filter /FlateDecode"
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), extra) + stream
                       + b"\nendstream")
        content_ref = len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
                       % content_ref)
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def drawn_page(text: str, dpi: int = 150) -> Any:
    """A half-letter grayscale image with ``text`` set in 12-point type (Pillow's own font)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (int(8.5 * dpi), int(5.5 * dpi)), 255)
    font = ImageFont.load_default(size=round(12 * dpi / 72))
    ImageDraw.Draw(img).multiline_text((dpi, dpi), text, fill=0, font=font,
                                       spacing=round(6 * dpi / 72))
    return img


def image_pdf(path: Path, pages: list[Any], dpi: int = 150) -> Path:
    """An image-only PDF (a scan, as a scanner makes it): one page per image, no text layer."""
    pages[0].save(path, format="PDF", resolution=dpi, save_all=True, append_images=pages[1:])
    return path


def page_text(number: int, words: int = 12) -> str:
    """Deterministic, distinct text for page ``number``."""
    vocab = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
             "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]
    body = " ".join(vocab[(number * 7 + i) % len(vocab)] for i in range(words))
    return f"Page {number} of the test document\n{body}"


class _Counter:
    """A per-key attempt counter in a folder, shared by every worker process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def bump(self, key: str) -> int:
        path = self.folder / key
        with open(path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            count = int(fh.read() or 0) + 1
            fh.seek(0)
            fh.truncate()
            fh.write(str(count))
        return count


class SleepingEngine:
    """Waits ``latency`` per request plus ``per_page`` per page (a remote API's cost grows
    with the pages it transcribes), then returns the text layer (or 'page N')."""

    name = "sleeping"

    def __init__(self, latency: float = 0.0, *, per_page: float = 0.0,
                 transient_failures: int = 0,
                 failing_pages: frozenset[int] = frozenset(),
                 crash_pages: frozenset[int] = frozenset(), crash_times: int = 1,
                 counter_dir: Path | None = None) -> None:
        self.latency = latency
        self.per_page = per_page
        self.transient_failures = transient_failures
        self.failing_pages = failing_pages
        self.crash_pages = crash_pages
        self.crash_times = crash_times
        self.counter = _Counter(counter_dir) if counter_dir else None

    def extract(self, request: PageRequest) -> Extraction:
        numbers = [p.number for p in request.pages]
        key = f"{request.path.parent.parent.name}-{numbers[0]}"
        attempt = self.counter.bump(key) if self.counter else 1
        time.sleep(self.latency + self.per_page * len(numbers))
        if set(numbers) & self.crash_pages and self.counter and self.counter.bump(
                f"crash-{key}") <= self.crash_times:
            os._exit(137)  # like a SIGKILL by the OOM killer
        if attempt <= self.transient_failures:
            raise TransientEngineError(f"injected transient failure {attempt}", retry_after=0.1)
        bad = sorted(set(numbers) & self.failing_pages)
        if bad:
            raise PageFailed(f"injected permanent failure on page {bad[0]}")
        texts = _texts(request)
        return Extraction([PageText(n, t, self.name) for n, t in zip(numbers, texts,
                                                                     strict=True)])


def _texts(request: PageRequest) -> list[str]:
    from ocr_daemon.formats import pdf
    from ocr_daemon.formats.sniff import PDF

    if request.mime == PDF:
        return pdf.page_texts(request.path, [p.index for p in request.pages])
    return [f"page {p.number}" for p in request.pages]


def sleeping_factory(engine: SleepingEngine) -> Callable[[EngineContext], Engine]:
    def factory(ctx: EngineContext) -> Engine:
        return engine

    return factory


def main(argv: list[str] | None = None) -> int:
    from ocr_daemon import config, log
    from ocr_daemon.delivery import tasks
    from ocr_daemon.delivery.worker import run_worker

    parser = argparse.ArgumentParser(prog="python -m ocr_daemon.testing")
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("--config", required=True)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--per-page", type=float, default=0.0, help="seconds per page")
    parser.add_argument("--transient-failures", type=int, default=0)
    parser.add_argument("--failing-pages", default="")
    parser.add_argument("--crash-pages", default="")
    parser.add_argument("--crash-times", type=int, default=1)
    parser.add_argument("--counter-dir", type=Path, default=None)
    parser.add_argument("--queues", default=None)
    parser.add_argument("--pool", default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)

    def pages(spec: str) -> frozenset[int]:
        return frozenset(int(x) for x in spec.split(",") if x)

    engine = SleepingEngine(args.sleep, per_page=args.per_page,
                            transient_failures=args.transient_failures,
                            failing_pages=pages(args.failing_pages),
                            crash_pages=pages(args.crash_pages), crash_times=args.crash_times,
                            counter_dir=args.counter_dir)
    cfg = config.load(args.config)
    log.configure(cfg.logging.level, cfg.logging.format)
    tasks.engine_factory = sleeping_factory(engine)
    return run_worker(cfg, args.queues.split(",") if args.queues else None,
                      args.concurrency, args.pool, args.name)


if __name__ == "__main__":
    raise SystemExit(main())
