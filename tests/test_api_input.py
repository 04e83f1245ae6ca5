"""The HTTP API refuses bad input cleanly (names never paths, 413 on the streamed bytes, 415
from the content, aborted uploads leave nothing) and guards itself with tokens."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocr_daemon.service.procs import free_port
from tests.support.pdfs import make_text_pdf, page_text

from .api_support import (
    MAX_UPLOAD,
    api_env,
    left_in,
    serve_api,
    upload,
    wait_api,
    wait_ended,
)
from .conftest import PYTHON, Env, wait_for


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           redis_server: Any) -> Iterator[tuple[Env, httpx.Client]]:
    yield from serve_api(tmp_path_factory, redis_server, "apiin:")


def _raw_request(port: int, head: bytes, body: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + body)
        time.sleep(0.3)


def test_upload_aborted_mid_body_leaves_nothing(served: tuple[Env, httpx.Client]) -> None:
    env, client = served
    port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
    before = left_in(env.root)
    boundary = "XyZ"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"cut.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").encode()
    head = (f"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {3_000_000}\r\n\r\n").encode()
    _raw_request(port, head, part + b"%PDF-1.4\n" + b"x" * 1_000_000)  # then the client dies
    def clean() -> bool:
        return left_in(env.root) == before
    wait_for(clean, 10, 0.1, what=f"no trace of the upload: {left_in(env.inbox)}")


@pytest.mark.parametrize("name", [
    "../../etc/passwd", "a\x00b.pdf", "x" * 300 + ".pdf", "Été – 東京 📄.pdf", "", ".hidden.pdf",
    "C:\\Users\\me\\scan.pdf",
])
def test_client_file_names_are_never_paths(served: tuple[Env, httpx.Client], tmp_path: Path,
                                           name: str) -> None:
    env, client = served
    source = make_text_pdf(tmp_path / "n.pdf", [page_text(9)])
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\n\r\n").encode() + source.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    res = client.post("/v1/documents", content=body,
                      headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert res.status_code == 202, res.text
    stored = res.json()["name"]
    assert "/" not in stored and "\\" not in stored and "\x00" not in stored
    assert not stored.startswith(".") and 0 < len(stored.encode()) <= 200
    doc = wait_ended(client, res.json()["id"])
    assert doc["state"] == "completed"
    # kept in the record as the client sent it (python-multipart itself cuts a Windows
    # path, as old browsers sent, to its last part)
    sent = name.rsplit("\\", 1)[-1] if name.startswith("C:\\") else name
    assert doc["original_name"] == sent
    assert client.get(f"/v1/documents/{doc['id']}/text").text == page_text(9)
    outputs = [p for p in env.root.rglob("*") if p.is_file()]
    assert all(env.root in p.parents for p in outputs)
    assert not Path("/etc/passwd.pdf").exists()


def test_too_large_is_refused_on_the_streamed_bytes(served: tuple[Env, httpx.Client],
                                                   tmp_path: Path) -> None:
    env, client = served
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.4\n" + os.urandom(MAX_UPLOAD + 1024))
    before = left_in(env.root)
    res = upload(client, big)  # Content-Length declared
    assert res.status_code == 413 and res.json()["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length, counted as it streams
        yield b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pdf\"\r\n\r\n"
        with open(big, "rb") as fh:
            while block := fh.read(256 * 1024):
                yield block
        yield b"\r\n--B--\r\n"
    res = client.post("/v1/documents", content=chunks(),
                      headers={"content-type": "multipart/form-data; boundary=B"})
    assert res.status_code == 413, res.text
    assert res.json()["code"] == "too_large" and res.json()["hint"]
    assert left_in(env.root) == before


@pytest.mark.parametrize(("content", "status", "code"), [
    (b"name,amount\nfoo,1\n", 415, "unsupported_type"),
    (b"GIF89a" + b"\x00" * 100, 415, "unsupported_type"),
    (b"", 400, "empty_file"),
])
def test_bad_content_is_refused_by_its_bytes(served: tuple[Env, httpx.Client], tmp_path: Path,
                                            content: bytes, status: int, code: str) -> None:
    env, client = served
    path = tmp_path / "looks-like.pdf"  # the name says PDF: the bytes decide
    path.write_bytes(content)
    before = left_in(env.root)
    res = upload(client, path)
    assert res.status_code == status and res.json()["code"] == code
    assert set(res.json()) >= {"code", "message", "hint"}
    assert left_in(env.root) == before


def test_requests_the_api_cannot_act_on_get_json_errors(
        served: tuple[Env, httpx.Client]) -> None:
    _, client = served
    for path in ("/v1/documents/nope", "/v1/documents/20261130T032836Z-84e92194",
                 "/api/documents/20261130T032836Z-84e92194/status"):
        res = client.get(path)
        assert res.status_code == 404 and res.json()["code"] == "not_found", path
    res = client.post("/v1/documents", data={"watch": "x"})
    assert res.status_code == 400 and res.json()["code"] == "bad_request"
    res = client.post("/v1/documents", files={"file": ("a.pdf", b"%PDF-1.4 x")},
                      data={"engine": "gemini"})
    assert res.status_code == 400 and "api.engines" in res.json()["hint"]


def test_tokens_guard_the_api(make_env: Any, tmp_path: Path) -> None:
    env: Env = make_env()
    port = free_port()
    token = "s3cret-token-0123456789"
    api_env(env, port, tokens=[token])
    proc = env.start("api")
    base = f"http://127.0.0.1:{port}"
    wait_api(base, proc)
    source = make_text_pdf(tmp_path / "t.pdf", [page_text(1)])
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/v1/health").status_code == 200  # for load balancers
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                        {"Authorization": token}):
            res = client.get("/v1/documents", headers=headers)
            assert res.status_code == 401 and res.json()["code"] == "unauthorized"
            assert res.headers["www-authenticate"] == "Bearer"
        res = upload(client, source, headers={"Authorization": "Bearer nope"})
        assert res.status_code == 401
        assert not [p for p in env.inbox.iterdir()]  # refused before a byte was stored
        ok = upload(client, source, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 202
    assert token not in proc.output()  # never logged


def test_refuses_a_public_address_without_a_token(make_env: Any) -> None:
    env: Env = make_env()
    api_env(env, free_port())
    env.write_config(api={"listen": "0.0.0.0:18080"})
    out = subprocess.run([PYTHON, "-m", "ocr_daemon", "api", "--config", str(env.config_path)],
                         capture_output=True, text=True, timeout=60, env=env.env())
    assert out.returncode == 2
    assert "not a loopback address and no token" in out.stderr


@pytest.mark.parametrize(("api", "problem"), [
    ({"watch": "nope"}, "api.watch: no watch named 'nope'"),
    ({"listen": "8080"}, "api.listen"),
    ({"listen": "127.0.0.1:99999"}, "api.listen: the port must be 1-65535"),
    ({"tokens": ["short"]}, "api.tokens[0]"),
    ({"max_upload_bytes": 0}, "api.max_upload_bytes"),
    ({"engines": ["magic"]}, "api.engines: unknown engine(s) ['magic']"),
])
def test_api_configuration_is_validated_with_its_key(tmp_path: Path, api: dict[str, Any],
                                                     problem: str) -> None:
    from ocr_daemon import config
    from ocr_daemon.errors import ConfigError

    data = {"watches": [{"name": "w", "root": str(tmp_path / "w")}], "api": api}
    with pytest.raises(ConfigError) as caught:
        config.parse(data, tmp_path)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_config_check_masks_api_tokens(tmp_path: Path) -> None:
    from ocr_daemon import config

    cfg = config.parse({"watches": [{"name": "w", "root": str(tmp_path / "w")}],
                        "api": {"tokens": ["a-very-secret-token-123"]}}, tmp_path)
    assert config.redacted(cfg)["api"]["tokens"] == ["***"]
