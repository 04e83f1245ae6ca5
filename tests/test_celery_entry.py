"""`celery -A ocr_daemon.celery_app`: Celery's own CLI reads $OCR_DAEMON_CONFIG when it needs it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from ocr_daemon.delivery import names
from tests.support.pdfs import make_text_pdf

from .conftest import PYTHON, Env, Proc

NODE = "celerycli@test"


def celery(*args: str) -> list[str]:
    return [PYTHON, "-m", "celery", "-A", "ocr_daemon.celery_app", *args]


def test_a_worker_started_by_celerys_cli_processes_a_document_and_has_every_task(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    environ = {**env.env(), "OCR_DAEMON_CONFIG": str(env.config_path)}
    env.start("watch")
    env.procs.append(Proc(celery("worker", "--pool", "solo", "--queues", ",".join(names.QUEUES),
                                 "--without-mingle", "--without-gossip", "--hostname", NODE),
                          environ, env.tmp / "celery-worker.log"))
    env.drop(make_text_pdf(tmp_path / "viacli.pdf", ["started by celery itself"]))
    result = env.wait_result("viacli", timeout=120)
    assert result["pages"][0]["text"].strip() == "started by celery itself"
    registered = subprocess.run(celery("inspect", "registered", "--timeout", "10",
                                       "--destination", NODE),
                                env=environ, capture_output=True, text=True, timeout=180,
                                check=False)
    assert registered.returncode == 0, registered.stderr
    for task in names.ROUTES:  # send_webhook too: registered explicitly, not by an import
        assert task in registered.stdout
