"""The original backend's routes under /api/documents, answering in its shapes, so that its
clients work unchanged; each is a thin view over the /v1 code."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from ocr_daemon.api import actions
from ocr_daemon.api.app import Services, services
from ocr_daemon.api.routes_v1 import UPLOAD_BODY, upload
from ocr_daemon.api.uploads import Accepted

router = APIRouter(tags=["original backend (aliases)"])
Svc = Annotated[Services, Depends(services)]


def _task_id(svc: Services, doc_id: str) -> str | None:
    live = svc.rt.store.get(doc_id)
    return live.fields.get("task_id") if live else None


def _queued(svc: Services, accepted: Accepted, message: str) -> dict[str, Any]:
    return {"document_id": accepted.doc_id, "filename": accepted.name, "status": "queued",
            "task_id": _task_id(svc, accepted.doc_id), "message": message}


@router.post("/documents/upload", openapi_extra=UPLOAD_BODY,
             summary="Upload (original backend): form field `file`")
async def upload_document(request: Request, svc: Svc,
                          idempotency_key: Annotated[str | None, Header()] = None,
                          ) -> JSONResponse:
    accepted, _ = await upload(request, svc, idempotency_key)
    return JSONResponse(_queued(svc, accepted, "Document uploaded and queued for processing"))


@router.get("/documents/{doc_id}/status", summary="Status (original backend)")
def document_status(doc_id: str, svc: Svc) -> dict[str, Any]:
    v = svc.view(doc_id)
    error = v["error"] or {}
    return {
        "document_id": doc_id,
        "status": v["state"],
        "progress_percentage": v["progress_percentage"],
        "task": {"task_id": v["task"]["id"], "state": v["task"]["state"],
                 "info": {"chunks": {k: v["chunks"].get(k, 0) for k in
                                     ("total", "completed", "failed", "processing")},
                          "waiting": v["waiting"]}},
        "error_message": error.get("message"),
        "updated_at": v["updated_at"],
    }


@router.get("/documents/{doc_id}/progress", summary="Progress per chunk (original backend)")
def document_progress(doc_id: str, svc: Svc) -> dict[str, Any]:
    v = svc.view(doc_id)
    chunks = v["chunks"]
    return {
        "document_id": doc_id,
        "status": v["state"],
        "progress_percentage": v["progress_percentage"],
        "real_time_progress": {
            "total_chunks": chunks.get("total", 0),
            "completed_chunks": chunks.get("completed", 0),
            "failed_chunks": chunks.get("failed", 0),
            "processing_chunks": chunks.get("processing", 0),
            "overall_progress": v["progress_percentage"],
        },
        "chunk_details": {
            str(item["index"] + 1): {"status": item["state"],
                                     "error": (item.get("error") or {}).get("message")}
            for item in chunks.get("items", [])
        },
    }


@router.post("/documents/{doc_id}/reprocess", summary="Reprocess (original backend)")
def reprocess_document(doc_id: str, svc: Svc) -> dict[str, Any]:
    accepted = actions.reprocess(svc.rt, svc.dispatcher, doc_id, None)
    body = _queued(svc, accepted, f"Document {doc_id} queued for reprocessing as "
                   f"{accepted.doc_id}")
    return {**body, "previous_document_id": doc_id}
