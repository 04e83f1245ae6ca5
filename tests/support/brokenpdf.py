"""Small PDFs made on the spot: text drawn in Helvetica whose ToUnicode map says what we like."""

from __future__ import annotations

from pathlib import Path

from tests.support.pdfs import assemble


def _cmap(mapping: dict[int, int]) -> bytes:
    lines = [f"<{code:02X}> <{uni:04X}>" for code, uni in sorted(mapping.items())]
    body = "\n".join(lines)
    return (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Test def /CMapType 2 def\n"
        "1 begincodespacerange <00> <FF> endcodespacerange\n"
        f"{len(lines)} beginbfchar\n{body}\nendbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end\n").encode()


def write_pdf(path: Path, lines: list[str], to_unicode: dict[int, int] | None = None,
              size: int = 24) -> Path:
    """A one-page PDF drawing ``lines`` in Helvetica; ``to_unicode`` (byte -> code point)
    gives the font a ToUnicode map, e.g. one that sends letters to private-use characters."""
    content = ["BT", f"/F1 {size} Tf", f"{int(size * 1.3)} TL", "60 720 Td"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        content.append(f"({escaped}) Tj T*")
    content.append("ET")
    stream = "\n".join(content).encode()
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
               b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
               font + (b" /ToUnicode 6 0 R >>" if to_unicode else b" >>"),
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    if to_unicode:
        cmap = _cmap(to_unicode)
        objects.append(b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream")
    path.write_bytes(assemble(objects))
    return path


def private_use(text: str) -> dict[int, int]:
    """A ToUnicode map sending every byte of ``text`` to a private-use code point."""
    return {ord(ch): 0xE000 + ord(ch) for ch in set(text) if not ch.isspace()}
