"""`ocr-daemon cancel`: stop a queued or running document and end it as cancelled."""

from __future__ import annotations

import getpass
import socket

from . import lookup
from .clock import iso
from .docrecord import Doc
from .errors import Cancelled
from .finish import fail_document
from .manifest import Manifest
from .runtime import Runtime
from .state import CANCELLED


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
