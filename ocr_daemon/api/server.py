"""`ocr-daemon api`: serve the application with uvicorn; READY=1 and watchdog pings for systemd."""

from __future__ import annotations

import signal
import threading

import uvicorn

from ocr_daemon import celery_app, log, redis_conn, runtime
from ocr_daemon.api.app import create_app
from ocr_daemon.api.auth import check_listen, load_tokens
from ocr_daemon.config import Config
from ocr_daemon.delivery import webhook
from ocr_daemon.intake.dispatch import celery_sender
from ocr_daemon.record.layout import create_folders
from ocr_daemon.service import sdnotify


def _notify_when_started(server: uvicorn.Server, stop: threading.Event, url: str) -> None:
    while not server.started:
        if stop.wait(0.05):
            return
    sdnotify.notify("READY=1", f"STATUS=serving {url}")
    log.get().info("api_serving", url=url)
    watchdog = sdnotify.Watchdog()
    while not stop.wait(1.0):
        watchdog.ping()


def serve(cfg: Config) -> int:
    """Serve until SIGTERM/SIGINT (uvicorn's graceful shutdown)."""
    api = cfg.api
    tokens = load_tokens(api)
    check_listen(api, tokens)
    url = redis_conn.resolve_url(cfg)
    celery = celery_app.configure(cfg, url)
    create_folders(cfg)
    rt = runtime.build(cfg, on_end=[webhook.notifier(celery)])  # a cancel's webhook too
    app = create_app(rt, celery_sender(celery), tokens)
    server = uvicorn.Server(uvicorn.Config(
        app, host=api.host, port=api.port, log_config=None, access_log=False,
        timeout_graceful_shutdown=5, lifespan="on", server_header=False))
    host = f"[{api.host}]" if ":" in api.host else api.host
    stop = threading.Event()
    threading.Thread(target=_notify_when_started, args=(server, stop, f"http://{host}:{api.port}/"),
                     name="api-ready", daemon=True).start()
    # uvicorn handles SIGTERM/SIGINT while it serves, then raises the signal again once it
    # has stopped: these handlers take that one, so that STOPPING=1 and exit 0 follow.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        stop.set()
        sdnotify.notify("STOPPING=1")
    return 0 if server.started else 1
