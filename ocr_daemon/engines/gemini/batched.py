"""A chunk through the Batch API: decide the mode, stage, wait, read the answer (gemini_batch).

The answer of a batched request is read like an interactive one: pages split back, and when
that does not work (MAX_TOKENS, RECITATION, a page count that does not match) the pages go
one by one interactively. A request's error in the job is classified like an interactive
error: a refused key or configuration stops the fleet; anything else sends the chunk back to
interactive mode. A job that failed, expired or was cancelled sends its chunks back to
interactive mode, or fails them (``batch_fallback``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocr_daemon import log
from ocr_daemon.config import GeminiConfig
from ocr_daemon.engines.base import PageRequest
from ocr_daemon.engines.gemini import prompt as gemini_prompt
from ocr_daemon.engines.gemini.batch import (
    ENDED_BADLY,
    SUCCEEDED,
    Batches,
    backlog_pages,
    new_ticket,
    read_ticket,
    ticket_path,
    write_ticket,
)
from ocr_daemon.engines.gemini.exchange import Answer
from ocr_daemon.engines.gemini.media import media_for
from ocr_daemon.engines.gemini.send import Sender
from ocr_daemon.engines.gemini.usage import Usage
from ocr_daemon.errors import (
    BatchJobFailed,
    KeyRejected,
    SettingRefused,
    WaitingForBatch,
)

if TYPE_CHECKING:
    from ocr_daemon.engines.gemini.batch_api import BatchApi, BatchRequest

DONE = ("STOP", "FINISH_REASON_UNSPECIFIED")


@dataclass(frozen=True)
class Outcome:
    texts: list[str] | None  # None: interactive (the whole chunk, or page by page)
    by_page: bool = False


class BatchMode:
    def __init__(self, settings: GeminiConfig, batches: Batches, api: Callable[[], BatchApi],
                 sender: Sender, watch: str) -> None:
        self.s = settings
        self.batches = batches
        self.api = api
        self.sender = sender
        self.watch = watch
        self.log = log.get("ocr_daemon.engines.gemini.batch", model=settings.model, watch=watch)

    def wants(self, request: PageRequest) -> bool:
        if self.s.mode == "interactive":
            return False
        ticket = read_ticket(ticket_path(request))
        if ticket is not None:  # decided on the chunk's first try
            return ticket.get("state") != "interactive"
        if self.s.mode == "batch":
            return True
        return backlog_pages(self.batches.r, self.batches.prefix, self.watch) > \
            self.s.batch_threshold_pages

    def build(self, key: str, request: PageRequest) -> BatchRequest:
        from ocr_daemon.engines.gemini.batch_api import BatchRequest

        media = media_for(request.path, request.mime, request.pages)
        return BatchRequest(key, media, gemini_prompt.build(len(request.pages), self.s.prompt))

    def run(self, request: PageRequest, used: Usage) -> Outcome:
        """The chunk's batch outcome, or WaitingForBatch. A refused key or configuration
        stops every worker, as an interactive request's would."""
        self.sender.guard.check()
        try:
            return self._run(request, used)
        except KeyRejected as exc:
            self.sender.guard.disable(exc.reason)
            raise
        except SettingRefused as exc:
            self.sender.guard.refuse(exc)
            raise

    def _run(self, request: PageRequest, used: Usage) -> Outcome:
        path = ticket_path(request)
        ticket = read_ticket(path)
        if ticket is None:
            ticket = new_ticket(path, request, self.batches.now())
            write_ticket(path, ticket)
        if ticket["state"] == "staged":
            self.batches.stage(path, request, ticket)
            self.batches.submit_due(self.build)
            ticket = read_ticket(path) or ticket
        if ticket["state"] == "submitted":
            ticket = self._poll(path, ticket)
            self.batches.sweep()
        if ticket["state"] == "interactive":
            return Outcome(None)
        if ticket["state"] == "done":
            return self._answer(path, ticket, request, used)
        job = ticket.get("job")
        state = "STAGED" if job is None else str(ticket.get("job_state") or "JOB_STATE_PENDING")
        retry = (self.s.batch_collect_seconds if job is None
                 else self.batches.poll_interval(float(ticket.get("submitted_at") or 0)))
        raise WaitingForBatch(
            f"waiting for a Gemini batch job ({job or 'staged, not sent yet'}: {state})",
            retry_after=max(0.5, retry), job=job, state=state)

    def _poll(self, path: Path, ticket: dict[str, Any]) -> dict[str, Any]:
        job = str(ticket["job"])
        poll = self.batches.poll(job, float(ticket.get("submitted_at") or 0))
        fresh = read_ticket(path) or ticket
        replies = poll.replies
        if fresh["state"] == "submitted" and poll.state == SUCCEEDED and replies is None:
            replies = self.batches.replies(job)  # ended, and our answer was not written
        if fresh["state"] == "submitted" and replies is not None:
            mine = next((r for r in replies if r.key == fresh["key"]), None)
            if mine is not None:  # the job's record in Redis was lost: take ours directly
                self.batches.record_reply(path, mine)
                fresh = read_ticket(path) or fresh
        if fresh["state"] == "submitted" and poll.state in ENDED_BADLY:
            if self.s.batch_fallback == "fail":
                raise BatchJobFailed(f"the Gemini batch job {job} ended {poll.state}")
            self.log.warning("gemini_batch_fallback", job=job, state=poll.state)
            fresh.update(state="interactive", job_state=poll.state)
            write_ticket(path, fresh)
        elif fresh["state"] == "submitted":
            # Rewritten at every look: a sign of life for the reaper while the job runs.
            fresh.update(job_state=poll.state, looked_at=self.batches.now())
            write_ticket(path, fresh)
        return fresh

    def _answer(self, path: Path, ticket: dict[str, Any], request: PageRequest,
                used: Usage) -> Outcome:
        api = self.api()
        if ticket.get("error"):
            error = api.error(ticket["error"])
            if isinstance(error, SettingRefused | KeyRejected):
                raise error  # the fleet is told in run()
            self.log.info("gemini_batch_request_failed", error=error.message)
            ticket["state"] = "interactive"
            write_ticket(path, ticket)
            return Outcome(None)
        answer: Answer = api.answer(ticket.get("response") or {})
        billed = Usage(self.s.model, True, 1, answer.tokens.prompt, answer.tokens.output,
                       answer.tokens.thinking, answer.tokens.total).priced(self.s)
        if not ticket.get("accounted"):  # a retry of the chunk reads it again: counted once
            self.sender.account(answer.tokens, batch=True)
            ticket["accounted"] = True
            write_ticket(path, ticket)
        used.batch = True
        used.add(billed)
        pages = len(request.pages)
        texts = gemini_prompt.split(answer.text, pages) if answer.finish in DONE else None
        if texts is None:
            self.log.info("gemini_page_by_page", pages=[request.pages[0].number,
                                                        request.pages[-1].number],
                          reason="page count mismatch" if answer.finish in DONE
                          else answer.finish, mode="batch")
            return Outcome(None, by_page=True)
        return Outcome(texts)
