"""`ocr-daemon cancel`: stop a queued or running document and end it as cancelled."""

from __future__ import annotations

import getpass
import socket

from ocr_daemon.clock import iso
from ocr_daemon.commands import lookup
from ocr_daemon.errors import Cancelled
from ocr_daemon.pipeline.finish import fail_document
from ocr_daemon.record.disk import Manifest
from ocr_daemon.record.doc import Doc
from ocr_daemon.record.state import CANCELLED
from ocr_daemon.runtime import Runtime


def cancel(rt: Runtime, target: str) -> tuple[Doc, str]:
    """End the document as cancelled: original to failed/, sidecars say why.

    Its record in processing/ goes away under the document's lock, so chunk tasks not yet
    started find nothing to do and never call the engine; one already in an engine call
    finishes it and finds the document gone.
    """
    found = lookup.in_flight(rt.cfg, target)
    dp = found.paths.doc(found.doc_id)
    doc = Doc(found.watch, found.paths, dp, Manifest.load(dp.manifest))
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    reason = Cancelled(f"cancelled by {who} at {iso(rt.clock.time())}")
    return doc, fail_document(rt, doc, reason, doc.plan(), state=CANCELLED)
