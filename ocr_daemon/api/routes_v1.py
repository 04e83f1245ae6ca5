"""The /v1 routes: upload, list, read, follow, cancel and reprocess documents; health, metrics."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from ocr_daemon.api import actions
from ocr_daemon.api.app import Services, services
from ocr_daemon.api.documents import links, listing, locate, view
from ocr_daemon.api.uploads import Accepted, receive
from ocr_daemon.errors import BadRequest, Conflict, TooLarge
from ocr_daemon.record.state import DOC_STATES

router = APIRouter(tags=["documents"])
open_router = APIRouter(tags=["service"])
Svc = Annotated[Services, Depends(services)]

UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "PDF, PNG, JPEG or TIFF (decided from the content)"},
            "watch": {"type": "string", "description": "the watch (default: api.watch)"},
            "engine": {"type": "string", "description": "an engine of api.engines"},
        }}}}}}
MULTIPART_OVERHEAD = 64 * 1024  # headers and fields around the file in one upload


class Links(BaseModel):
    self: str
    text: str
    result: str
    events: str
    cancel: str
    reprocess: str


class AcceptedBody(BaseModel):
    id: str
    status: str
    name: str
    links: Links


class ReprocessBody(BaseModel):
    engine: str | None = None


def accepted_body(accepted: Accepted) -> dict[str, Any]:
    return {"id": accepted.doc_id, "status": "queued" if accepted.queued else "accepted",
            "name": accepted.name, "links": links(accepted.doc_id)}


async def upload(request: Request, svc: Services, key: str | None) -> tuple[Accepted, bool]:
    """Receive, claim and queue one upload (shared with the original backend's route)."""
    api = svc.rt.cfg.api
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > api.max_upload_bytes + MULTIPART_OVERHEAD:
        raise TooLarge(f"the upload is larger than api.max_upload_bytes "
                       f"({api.max_upload_bytes} bytes)",
                       hint="Send a smaller file, or raise api.max_upload_bytes.")
    earlier = await run_in_threadpool(svc.uploads.reserve, key)
    if earlier is not None:
        current = await run_in_threadpool(svc.view, earlier)
        return Accepted(earlier, str(current["name"]), True, replayed=True), True
    doc_id = None
    try:
        default = svc.paths(None)
        received = await receive(request.stream(), request.headers.get("content-type", ""),
                                 default.inbox, api.max_upload_bytes)
        try:
            paths = svc.paths(received.fields.get("watch") or None)
            if paths.inbox != default.inbox:  # the file must be claimed within its watch
                moved = paths.inbox / received.tmp.name
                await run_in_threadpool(shutil.move, received.tmp, moved)
                received.tmp = moved
            engine = svc.uploads.engine_for(received.fields.get("engine"), list(api.engines))
            accepted = await run_in_threadpool(svc.uploads.accept, paths, received, engine)
        finally:
            received.tmp.unlink(missing_ok=True)
        doc_id = accepted.doc_id
        return accepted, False
    finally:
        await run_in_threadpool(svc.uploads.settle, key, doc_id)


@router.post("/documents", status_code=202, response_model=AcceptedBody,
             openapi_extra=UPLOAD_BODY, summary="Upload a document")
async def create_document(
    request: Request, svc: Svc,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Stream the file into the watch, claim it as a document and queue it: 202 once queued.
    The same `Idempotency-Key` again returns the same document."""
    accepted, replayed = await upload(request, svc, idempotency_key)
    return JSONResponse(accepted_body(accepted), status_code=200 if replayed else 202)


@router.get("/documents", summary="List documents, newest first")
def list_documents(
    svc: Svc,
    state: Annotated[str | None, Query(description=f"one of {', '.join(DOC_STATES)}")] = None,
    watch: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[str | None, Query(description="the `next` of the previous page")] = None,
) -> dict[str, Any]:
    """Documents in flight and those that ended within `state_ttl` (kept in Redis)."""
    if state is not None and state not in DOC_STATES:
        raise BadRequest(f"state must be one of {', '.join(DOC_STATES)}")
    items, cursor = listing(svc.rt.store, state, watch, limit, before)
    return {"items": items, "next": cursor}


@router.get("/documents/{doc_id}", summary="A document's state and progress")
def get_document(doc_id: str, svc: Svc) -> dict[str, Any]:
    return svc.view(doc_id)


def _output(svc: Services, doc_id: str, kind: str) -> Any:
    """The text or result file of a completed document; Conflict before or otherwise."""
    found = locate(svc.rt.cfg, svc.rt.store, doc_id)
    current = view(found)
    if found.out is None or not current["ended"]:
        raise Conflict(f"document {doc_id} is {current['state']}: no {kind} yet",
                       hint="Follow /events, or ask again when it has completed.")
    path = found.out.text if kind == "text" else found.out.result
    if current["state"] != "completed" or not path.exists():
        raise Conflict(f"document {doc_id} ended {current['state']}: it has no {kind}",
                       hint=(current.get("error") or {}).get("hint") or "")
    return path


@router.get("/documents/{doc_id}/text", response_class=PlainTextResponse,
            summary="The text (pages separated by form feed)")
def get_text(doc_id: str, svc: Svc) -> Response:
    return FileResponse(_output(svc, doc_id, "text"), media_type="text/plain; charset=utf-8")


@router.get("/documents/{doc_id}/result", summary="The full result JSON")
def get_result(doc_id: str, svc: Svc) -> Response:
    return FileResponse(_output(svc, doc_id, "result"), media_type="application/json")


def _followed(doc_id: str, request: Request) -> dict[str, Any]:
    """Looked up before the stream starts, so that an unknown id is a plain 404."""
    return services(request).view(doc_id)


@router.get("/documents/{doc_id}/events", response_class=EventSourceResponse,
            summary="Server-Sent Events of the document's state until it ends")
async def document_events(
    doc_id: str, request: Request,
    first: Annotated[dict[str, Any], Depends(_followed)],
) -> AsyncIterable[ServerSentEvent]:
    """One `state` event (the document as GET /v1/documents/{id} shows it) now and at every
    change; the stream closes after the event with `ended: true`."""
    svc = services(request)
    queue = svc.hub.subscribe(doc_id)
    try:
        current, number = first, 0
        while True:
            number += 1
            yield ServerSentEvent(data=current, event="state", id=str(number))
            if current["ended"]:
                return
            try:
                current = await asyncio.wait_for(queue.get(), timeout=30)
            except TimeoutError:
                current = await run_in_threadpool(svc.view, doc_id)
            while not queue.empty() and not current["ended"]:
                current = queue.get_nowait()
    finally:
        svc.hub.unsubscribe(doc_id, queue)


@router.post("/documents/{doc_id}/cancel", summary="Cancel a queued or running document")
def cancel_document(doc_id: str, svc: Svc) -> dict[str, Any]:
    state = actions.cancel_document(svc.rt, doc_id)
    return {"id": doc_id, "status": state}


@router.post("/documents/{doc_id}/reprocess", status_code=202, response_model=AcceptedBody,
             summary="Run an ended document again (a new document)")
def reprocess_document(doc_id: str, svc: Svc, body: ReprocessBody | None = None) -> Any:
    """A failed or cancelled document takes its original back from failed/; a completed
    one runs a copy of its archived original. `engine` may choose another engine."""
    engine = svc.uploads.engine_for(body.engine if body else None,
                                    list(svc.rt.cfg.api.engines))
    accepted = actions.reprocess(svc.rt, svc.dispatcher, doc_id, engine)
    return JSONResponse(accepted_body(accepted), status_code=202)


@open_router.get("/health", summary="Redis, workers and engines, for a load balancer")
def health(request: Request) -> JSONResponse:
    """200 when Redis answers (workers and engines are reported, not required)."""
    from ocr_daemon import celery_app
    from ocr_daemon.commands.status import engines, queue_depths

    svc = services(request)
    store = svc.rt.store
    body: dict[str, Any] = {"status": "ok", "redis": "ok"}
    try:
        store.r.ping()
        body["queues"] = queue_depths(store.r, store.prefix)
        body["engines"] = engines(store.r, store.prefix)
    except Exception as exc:  # boundary: any failure to reach Redis is the answer itself
        body.update(status="unavailable", redis=f"unreachable: {type(exc).__name__}")
        return JSONResponse(body, status_code=503)
    try:
        replies = celery_app.app.control.ping(timeout=0.5)
        body["workers"] = sorted(name for reply in replies for name in reply)
    except Exception:  # boundary: a broker hiccup leaves the workers unknown
        body["workers"] = None
    if not body["workers"]:
        body["status"] = "degraded"  # uploads are accepted, nothing processes them
    body["events_listeners"] = svc.hub.listeners
    body["upload_engines"] = list(svc.rt.cfg.api.engines)  # what the page offers
    return JSONResponse(body)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def prometheus(svc: Svc) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from ocr_daemon.service.metrics import registry_for

    data = generate_latest(registry_for(svc.rt.cfg, svc.rt.store))
    return Response(data, media_type=CONTENT_TYPE_LATEST)


