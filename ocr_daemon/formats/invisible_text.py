"""A text layer without word positions (Gemini pages): the text, invisible, in reading order.

Each line of the page's text gets its own line on the page, top to bottom (squeezed to the
page's width when long), in text render mode 3 (invisible) with a glyphless Identity-H font
whose ToUnicode map gives back every character: search and copy find the text; a selection
is only roughly where the ink is.
"""

from __future__ import annotations

import io

from pypdf.generic import DictionaryObject

from ocr_daemon.formats.pdfwrite import Layer, ObjectWriter, matrix

MARGIN = 0.05  # of the page, on every side
MAX_FONT = 12.0
GLYPH_WIDTH = 0.5  # em: the font's /DW 500


def _cmap() -> bytes:
    """ToUnicode: code = UTF-16 code unit (a bfrange may vary only its last byte)."""
    body = [b"/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
            b"/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
            b"/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
            b"1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"]
    for start in range(0, 256, 100):  # at most 100 entries per block
        block = range(start, min(start + 100, 256))
        body.append(f"{len(block)} beginbfrange\n".encode())
        body += [b"<%02X00> <%02XFF> <%02X00>\n" % (hi, hi, hi) for hi in block]
        body.append(b"endbfrange\n")
    body.append(b"endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n")
    return b"".join(body)


def _hex(line: str) -> str:
    units = []
    for ch in line:
        code = ord(ch)
        units.append(f"{code if code < 0xD800 or 0xE000 <= code < 0x10000 else 0xFFFD:04X}")
    return "".join(units)


def content(text: str, width: float, height: float) -> bytes:
    """The page's drawing operators: one invisible line of text per line of ``text``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return b""
    left, top = width * MARGIN, height * (1 - MARGIN)
    room_w, room_h = width * (1 - 2 * MARGIN), height * (1 - 2 * MARGIN)
    step = room_h / len(lines)
    size = max(0.5, min(MAX_FONT, step * 0.9))
    ops = ["BT", "3 Tr", f"/F1 {matrix([size])} Tf"]
    for i, line in enumerate(lines):
        stretch = 100 * room_w / max(1e-6, len(line) * GLYPH_WIDTH * size)
        y = top - (i + 1) * step + (step - size) / 2
        ops.append(f"{matrix([min(stretch, 100.0)])} Tz 1 0 0 1 {matrix([left, y])} Tm "
                   f"<{_hex(line)}> Tj")
    ops.append("ET")
    return "\n".join(ops).encode() + b"\n"


def reading_order_layer(text: str, width: float, height: float) -> Layer:
    """A one-page text-only PDF of ``text`` over a page ``width`` x ``height`` points."""
    buf = io.BytesIO()
    buf.write(b"%PDF-1.7\n")
    w = ObjectWriter(buf, 3)
    cmap = w.stream(DictionaryObject(), _cmap())
    descriptor = w.put(b"<</Type /FontDescriptor /FontName /GlyphLessFont /Flags 5 "
                       b"/FontBBox [0 0 500 1000] /ItalicAngle 0 /Ascent 1000 /Descent 0 "
                       b"/CapHeight 1000 /StemV 80>>")
    cid = w.put(b"<</Type /Font /Subtype /CIDFontType2 /BaseFont /GlyphLessFont "
                b"/CIDSystemInfo <</Registry (Adobe) /Ordering (Identity) /Supplement 0>> "
                b"/FontDescriptor " + f"{descriptor} 0 R".encode()
                + b" /DW 500 /CIDToGIDMap /Identity>>")
    font = w.put(b"<</Type /Font /Subtype /Type0 /BaseFont /GlyphLessFont "
                 b"/Encoding /Identity-H /DescendantFonts [" + f"{cid} 0 R".encode()
                 + b"] /ToUnicode " + f"{cmap} 0 R".encode() + b">>")
    drawing = w.stream(DictionaryObject(), content(text, width, height))
    w.put(b"<</Type /Page /Parent 2 0 R /MediaBox [0 0 " + matrix([width, height]).encode()
          + b"] /Resources <</Font <</F1 " + f"{font} 0 R".encode() + b">>>> /Contents "
          + f"{drawing} 0 R>>".encode())
    page = w.next - 1
    w.put(b"<</Type /Pages /Count 1 /Kids [" + f"{page} 0 R".encode() + b"]>>", number=2)
    w.put(b"<</Type /Catalog /Pages 2 0 R>>", number=1)
    xref_at = buf.tell()
    buf.write(w.xref_table(fresh=True) + f"trailer\n<</Size {w.next} /Root 1 0 R>>\n"
              f"startxref\n{xref_at}\n%%EOF\n".encode())
    return Layer.parse(buf.getvalue())
