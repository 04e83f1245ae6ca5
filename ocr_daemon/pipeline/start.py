"""Start a document: resume an ending in progress, or validate and plan it."""

from __future__ import annotations

from functools import partial
from typing import Any

from ocr_daemon import log
from ocr_daemon.clock import iso
from ocr_daemon.errors import DocumentError
from ocr_daemon.pipeline.finish import fail_document, resume
from ocr_daemon.pipeline.plan import make_plan
from ocr_daemon.pipeline.textpass import read_text_layers
from ocr_daemon.record.disk import Plan
from ocr_daemon.record.doc import Doc, ensure_live, init_chunks, publish
from ocr_daemon.record.state import PROCESSING
from ocr_daemon.runtime import Runtime


def start_document(rt: Runtime, doc: Doc, task_id: str | None) -> Plan | None:
    """The document's plan when there is work to do; None when it has ended."""
    logger = log.get(doc_id=doc.doc_id, watch=doc.watch.name, task_id=task_id)
    outcome = doc.outcome()
    plan = doc.plan()
    if outcome is not None:  # an ending was decided and interrupted: finish it
        resume(rt, doc, plan)
        return None
    started: dict[str, Any] = {"state": PROCESSING, "task_id": task_id, "waiting": "",
               "started_at": plan.started_at if plan else iso(rt.clock.time())}
    if not rt.store.set_doc(doc.doc_id, existing=True, **started):  # no read before it
        ensure_live(rt, doc, plan)  # Redis lost the document's state: rebuilt from disk
        rt.store.set_doc(doc.doc_id, **started)
    doc.dp.results.mkdir(exist_ok=True)  # before the plan: `auto`'s text pass saves there
    if plan is None:
        try:
            plan = make_plan(doc, rt.clock.time(), partial(read_text_layers, rt, doc))
        except DocumentError as exc:
            logger.warning("document_rejected", code=exc.code, message=exc.message)
            fail_document(rt, doc, exc)
            return None
        plan.save(doc.dp.plan)
        logger.info("document_planned", mime=plan.mime, pages=plan.pages,
                    chunks=len(plan.chunks), fan_out=plan.chunked)
    init_chunks(rt, doc, plan)
    publish(rt, doc, plan)
    return plan
