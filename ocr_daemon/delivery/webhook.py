"""Webhooks: a POST of a document's final progress JSON when it ends, delivered by a Celery task.

`notifier(app)` is a "document ended" hook of the Runtime (runtime.EndHook), called once the
ending has been carried out (every terminal file written): it reads the final progress
sidecar and sends `ocr_daemon.send_webhook` by name (routed to the `default` queue), so that
no worker, lock or document waits for the receiver. The ending logic never imports this
module: the process that builds its Runtime (worker, watcher, `cancel`) hands the hook in.
The task makes one POST per attempt (``timeout`` seconds), and retries 5xx, 408, 425, 429,
timeouts and connection errors up to ``retries`` more times with backoff
(``workers.retry_backoff``, doubling). A webhook that cannot be delivered is logged; it never
changes the document's ending.

Delivery is at least once (like every task): a receiver should treat ``doc_id`` + ``state``
as the key of an event it may see twice.

Headers: ``X-OCR-Daemon-Event: document.<state>``, ``X-OCR-Daemon-Doc-Id``, and with a
``secret``, ``X-OCR-Daemon-Signature: sha256=<hex HMAC-SHA256 of the body>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from celery import Celery, Task

from ocr_daemon import atomic, log
from ocr_daemon.backoff import backoff
from ocr_daemon.celery_app import app, current_config
from ocr_daemon.config import WebhookConfig
from ocr_daemon.delivery.names import SEND_WEBHOOK
from ocr_daemon.record.state import COMPLETED

if TYPE_CHECKING:
    from ocr_daemon.record.doc import Doc
    from ocr_daemon.runtime import EndHook, Runtime

EVENT_HEADER = "X-OCR-Daemon-Event"
DOC_HEADER = "X-OCR-Daemon-Doc-Id"
SIGNATURE_HEADER = "X-OCR-Daemon-Signature"
RETRY_STATUSES = frozenset({408, 425, 429})  # and every 5xx

try:
    USER_AGENT = f"ocr-daemon/{version('ocr-daemon')}"
except PackageNotFoundError:  # running from a source tree
    USER_AGENT = "ocr-daemon"


@dataclass(frozen=True)
class Attempt:
    ok: bool
    retryable: bool
    detail: str  # "HTTP 200", "TimeoutError: timed out", ...


def public_url(url: str, query: bool = False) -> str:
    """The URL without credentials (and without its query, which may hold a token, unless
    ``query``): what is logged, and what is requested (credentials go in a header)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query if query else "", ""))


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET without its body: report it instead."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(hook: WebhookConfig, payload: dict[str, Any]) -> Attempt:
    """One POST of ``payload``; never raises for what the network or the receiver does."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               EVENT_HEADER: f"document.{payload.get('state')}",
               DOC_HEADER: str(payload.get("doc_id"))}
    if hook.secret:
        headers[SIGNATURE_HEADER] = signature(hook.secret, body)
    parts = urlsplit(hook.url)
    if parts.username is not None:  # https://user:password@host/...: Basic authentication
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    try:
        request = urllib.request.Request(public_url(hook.url, query=True), data=body,
                                         headers=headers, method="POST")
        with _opener.open(request, timeout=hook.timeout) as response:
            response.read(1 << 16)
            return Attempt(True, False, f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        return Attempt(False, exc.code >= 500 or exc.code in RETRY_STATUSES, f"HTTP {exc.code}")
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
        reason = getattr(exc, "reason", None) or exc
        return Attempt(False, True, f"{type(exc).__name__}: {reason}")
    except ValueError as exc:  # a URL the HTTP client refuses (its message may hold secrets)
        return Attempt(False, False, f"{type(exc).__name__}: the URL is not usable")


@app.task(bind=True, name=SEND_WEBHOOK, max_retries=None)
def send_webhook(self: Task, watch: str, payload: dict[str, Any]) -> str:
    """Deliver one webhook; retried by Celery with backoff while ``retries`` allow."""
    cfg = current_config()
    hook = cfg.watch(watch).webhook
    logger = log.get(doc_id=payload.get("doc_id"), watch=watch, state=payload.get("state"))
    if hook is None:
        return "off"  # the watch no longer has one
    attempt = post(hook, payload)
    tries = self.request.retries + 1
    url = public_url(hook.url)
    if attempt.ok:
        logger.info("webhook_sent", url=url, result=attempt.detail, attempts=tries)
        return "sent"
    if attempt.retryable and self.request.retries < hook.retries:
        delay = backoff(self.request.retries, cfg.workers.retry_backoff,
                        cfg.workers.retry_backoff_max)
        logger.warning("webhook_retry", url=url, result=attempt.detail, attempts=tries,
                       delay=round(delay, 2))
        raise self.retry(countdown=delay, max_retries=hook.retries)
    logger.error("webhook_failed", url=url, result=attempt.detail, attempts=tries)
    return "failed"


def notifier(sender: Celery) -> EndHook:
    """The "document ended" hook that queues the webhook of a document through ``sender``
    (a configured app); a no-op for a watch without one; never raises."""

    def notify(rt: Runtime, doc: Doc, state: str) -> None:
        hook = doc.watch.webhook
        if hook is None:
            return
        try:
            out = doc.out
            payload = atomic.read_json(out.progress if state == COMPLETED
                                       else out.failed_progress)
            sender.send_task(SEND_WEBHOOK, (doc.watch.name, payload))
        except Exception as exc:  # boundary: the document has ended whatever happens here
            log.get(doc_id=doc.doc_id, watch=doc.watch.name).warning(
                "webhook_not_queued", url=public_url(hook.url),
                error=f"{type(exc).__name__}: {exc}")

    return notify
