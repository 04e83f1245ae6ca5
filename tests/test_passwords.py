"""Known passwords: a watch's private passwords_file opens encrypted PDFs; nothing shows them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pypdf import PdfWriter

from ocr_daemon import config
from ocr_daemon.errors import ConfigError, EncryptedDocument
from ocr_daemon.formats import pdf
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import RESOURCES, Env, read_json, wait_for

ENCRYPTED = RESOURCES / "libreoffice-writer-password.pdf"  # user password 'openpassword'
PASSWORD = "openpassword"


def passwords_file(tmp_path: Path, lines: list[str], mode: int = 0o600) -> Path:
    path = tmp_path / "pdf-passwords"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    path.chmod(mode)
    return path


def parse(tmp_path: Path, path: Path) -> config.Config:
    return config.parse({"watches": [{"name": "w", "root": str(tmp_path / "w"),
                                      "passwords_file": str(path)}]}, tmp_path)


def test_passwords_file_readable_by_others_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = passwords_file(tmp_path, [PASSWORD], mode=0o644)
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, path)
    [problem] = err.value.problems
    assert problem.startswith("watches[0].passwords_file: ")
    assert "group or others" in problem and "chmod 600" in problem
    assert PASSWORD not in problem


def test_missing_passwords_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"watches\[0\]\.passwords_file: .*cannot be read"):
        parse(tmp_path, tmp_path / "nowhere")


def test_private_passwords_file_is_accepted_and_masked_nowhere_needed(tmp_path: Path) -> None:
    cfg = parse(tmp_path, passwords_file(tmp_path, [PASSWORD]))
    assert cfg.watches[0].passwords_file == tmp_path / "pdf-passwords"
    assert PASSWORD not in str(config.redacted(cfg))  # the file's path only, never its lines


def test_each_candidate_is_tried_and_the_result_says_decrypted() -> None:
    opened = pdf.inspect(ENCRYPTED, 100, ["wrong", " openpassword", PASSWORD])
    assert (opened.pages, opened.decrypted) == (1, True)
    assert pdf.inspect(RESOURCES / "pdflatex-4-pages.pdf", 100, [PASSWORD]).decrypted is False


def test_no_candidate_fits_says_how_many_were_tried_not_which() -> None:
    with pytest.raises(EncryptedDocument) as err:
        pdf.inspect(ENCRYPTED, 100, ["wrong", "also wrong"])
    assert "none of the 2 passwords" in err.value.message
    assert "wrong" not in err.value.message


def everything_written(env: Env) -> str:
    """Every file the daemon wrote (outputs, state, logs) as one text."""
    parts = []
    for folder in (env.root, env.tmp / "state"):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix != ".pdf":
                parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    parts += [proc.output() for proc in env.procs]
    return "\n".join(parts)


def test_encrypted_pdf_with_its_password_in_passwords_file_comes_out_as_text(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    path = passwords_file(tmp_path, ["not this one", PASSWORD])
    env = make_env(watch={"passwords_file": str(path)})
    env.run_daemon()
    env.drop(ENCRYPTED, name="payslip.pdf")
    result = env.wait_result("payslip", timeout=60)
    assert result["source"]["decrypted"] is True
    [page] = result["pages"]  # each page says where its text came from
    assert (page["engine"], page["extractor"], page["text_layer"]) == ("pdftext", "pypdfium2",
                                                                       "ok")
    text = (env.outbox / "payslip.txt").read_text(encoding="utf-8")
    assert text.startswith("Lorem ipsum dolor sit amet")
    assert (env.archive / "payslip.pdf").read_bytes() == ENCRYPTED.read_bytes()  # kept as is
    env.drop(RESOURCES / "r4-aes-user-password.pdf", name="other.pdf")  # not in the file
    error = env.wait_error("other", timeout=60)
    assert error["error"]["code"] == "encrypted_document"
    assert "none of the 2 passwords" in error["error"]["message"]
    assert read_json(env.failed / "other.progress.json")["state"] == "failed"
    written = everything_written(env)
    assert PASSWORD not in written and "not this one" not in written


def test_a_long_encrypted_pdf_is_decrypted_once_and_its_chunks_read_the_copy(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    plain = make_text_pdf(tmp_path / "plain.pdf", [page_text(n) for n in range(1, 26)])
    writer = PdfWriter(clone_from=plain)
    writer.encrypt(PASSWORD, algorithm="AES-256")
    locked = tmp_path / "statement.pdf"
    with open(locked, "wb") as fh:
        writer.write(fh)
    env = make_env(watch={"passwords_file": str(passwords_file(tmp_path, [PASSWORD])),
                          "chunk_pages": 10, "chunk_threshold_pages": 10})
    env.run_daemon()
    env.drop(locked)
    result = env.wait_result("statement", timeout=60)
    assert result["source"]["decrypted"] is True
    assert [c["pages"] for c in result["chunks"]] == [[1, 10], [11, 20], [21, 25]]
    assert [p["text"] for p in result["pages"]] == [page_text(n) for n in range(1, 26)]
    assert (env.archive / "statement.pdf").read_bytes() == locked.read_bytes()
    # The decrypted copy goes with the record, which is removed after the result appears.
    wait_for(lambda: not any(env.processing.iterdir()), 20, what="the record removed")
    assert PASSWORD not in everything_written(env)
