"""Helpers of the API's tests: a configuration with the API, a served daemon, uploads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader, PdfWriter

from ocr_daemon.service.procs import free_port
from tests.support.pdfs import make_text_pdf

from .conftest import Env, wait_for

MAX_UPLOAD = 6 * 1024 * 1024



def api_env(env: Env, port: int, **api: Any) -> None:
    env.write_config(watch={"engine": "auto"},
                     api={"enabled": True, "listen": f"127.0.0.1:{port}",
                          "max_upload_bytes": MAX_UPLOAD, **api})


def wait_api(base: str, proc: Any, timeout: float = 60) -> None:
    def up() -> bool:
        try:
            return httpx.get(f"{base}/v1/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False
    try:
        wait_for(up, timeout, 0.2, what="the API to answer")
    except AssertionError:
        raise AssertionError("API not up:\n" + proc.output()[-4000:]) from None


def serve_api(tmp_path_factory: pytest.TempPathFactory, redis_server: Any,
              prefix: str) -> Iterator[tuple[Env, httpx.Client]]:
    """One `ocr-daemon run` (watcher, workers and the API) for a module's tests: its
    module-scoped fixture yields from this."""
    env = Env(tmp_path_factory.mktemp("api"), redis_server.url, prefix)
    port = free_port()
    api_env(env, port)
    proc = env.run_daemon()
    base = f"http://127.0.0.1:{port}"
    wait_api(base, proc)
    with httpx.Client(base_url=base, timeout=60) as client:
        yield env, client
    env.close()


def upload(client: httpx.Client, path: Path, name: str | None = None,
           **kwargs: Any) -> httpx.Response:
    with open(path, "rb") as fh:
        return client.post("/v1/documents", files={"file": (name or path.name, fh)}, **kwargs)


def wait_ended(client: httpx.Client, doc_id: str, timeout: float = 90) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/v1/documents/{doc_id}").json()
        return body if body.get("ended") else None
    result: dict[str, Any] = wait_for(ended, timeout, 0.2, what=f"{doc_id} to end")
    return result


def left_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def padded_pdf(path: Path, pages: list[str], size: int) -> Path:
    """A text PDF of about ``size`` bytes (an embedded file pads it; the text stays)."""
    make_text_pdf(path, pages)
    writer = PdfWriter(clone_from=PdfReader(path))
    writer.add_attachment("padding.bin", os.urandom(max(0, size - path.stat().st_size)))
    with open(path, "wb") as fh:
        writer.write(fh)
    return path
