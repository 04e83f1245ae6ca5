"""Engine `gemini`: pages transcribed by Google Gemini (google-genai SDK), under fleet-wide limits.

A chunk's pages go in one request (one PDF, or one image per page) with a prompt that asks
for a page-break line between pages; the answer is split back into pages. When that does
not work (the count of pages does not match, MAX_TOKENS, a refusal) each page goes alone, a
single-page PDF made in memory. A page alone:

- RECITATION, SAFETY and other refusals: retried ``refusal_retries`` times with varied
  settings (temperature, seed, safety filters relaxed, a note on the document's use), then
  the page fails (PageFailed, naming the reason);
- MAX_TOKENS: retried the same way (one page that long is most often a model repeating
  itself); if still cut, the text up to the cut is kept with a warning in the result, as a
  page cut short is worth more than failing the whole document;
- a blank page gives empty text: the prompt asks for a blank marker, never invented text.

Keys, limits and retries: gemini_guard (shared flags), ratelimit (shared limiter),
gemini_send (retry policy), gemini_api (the SDK boundary).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from ocr_daemon import log
from ocr_daemon.config import GeminiConfig
from ocr_daemon.engines.base import (
    Engine,
    EngineContext,
    Extraction,
    Page,
    PageRequest,
    PageText,
    settings_for,
)
from ocr_daemon.engines.gemini import prompt as gemini_prompt
from ocr_daemon.engines.gemini.batch import Batches
from ocr_daemon.engines.gemini.batched import BatchMode
from ocr_daemon.engines.gemini.exchange import Answer, Variant
from ocr_daemon.engines.gemini.guard import KEY_HINT, Guard, fingerprint, settings_fingerprint
from ocr_daemon.engines.gemini.media import Media, estimate_tokens, media_for
from ocr_daemon.engines.gemini.send import Budget, Sender
from ocr_daemon.engines.gemini.usage import Usage
from ocr_daemon.engines.ratelimit import RateLimiter
from ocr_daemon.errors import EngineUnavailable, PageFailed

DONE = ("STOP", "FINISH_REASON_UNSPECIFIED")
CUT = "MAX_TOKENS"


def variant(attempt: int) -> Variant:
    """Settings of try ``attempt`` of a page: deterministic first, then varied."""
    if attempt == 0:
        return Variant()
    return Variant(temperature=min(1.0, 0.35 * attempt), seed=attempt, relaxed=True)


class GeminiEngine:
    name = "gemini"

    def __init__(self, settings: GeminiConfig, sender: Sender,
                 batch: BatchMode | None = None) -> None:
        self.s = settings
        self.sender = sender
        self.batch = batch
        self._local = threading.local()  # a threads pool shares one engine between tasks
        self.log = log.get("ocr_daemon.engines.gemini.engine", model=settings.model)

    @property
    def _used(self) -> Usage:
        """The usage of the extraction running in this thread."""
        used: Usage = self._local.used
        return used

    def extract(self, request: PageRequest) -> Extraction:
        budget = Budget(self.s.max_wait)
        warnings: list[str] = []
        self._local.used = Usage(self.s.model).priced(self.s)
        texts, by_page = None, False
        if self.batch is not None and self.batch.wants(request):
            outcome = self.batch.run(request, self._used)
            texts, by_page = outcome.texts, outcome.by_page
        if texts is None and not by_page and len(request.pages) > 1:
            texts = self._together(request, budget)
        if texts is None:
            texts = [self._alone(request, page, budget, warnings) for page in request.pages]
        return Extraction([PageText(p.number, t, self.name)
                           for p, t in zip(request.pages, texts, strict=True)], warnings,
                          usage=self._used.to_dict())

    def _ask(self, media: Sequence[Media], pages: int, attempt: int, budget: Budget) -> Answer:
        prompt = gemini_prompt.build(pages, self.s.prompt, attempt)
        tokens = estimate_tokens(media, prompt, self.s.tokens_per_page)
        answer = self.sender.send(media, prompt, variant(attempt), tokens, budget,
                                  self.s.max_output_tokens)
        t = answer.tokens
        self._used.add(Usage(self.s.model, False, 1, t.prompt, t.output, t.thinking,
                             t.total).priced(self.s))
        return answer

    def _together(self, request: PageRequest, budget: Budget) -> list[str] | None:
        """All pages in one request; None when they must go one by one."""
        pages = request.pages
        answer = self._ask(media_for(request.path, request.mime, pages), len(pages), 0, budget)
        texts = gemini_prompt.split(answer.text, len(pages)) if answer.finish in DONE else None
        if texts is None:
            reason = "page count mismatch" if answer.finish in DONE else answer.finish
            self.log.info("gemini_page_by_page", pages=[pages[0].number, pages[-1].number],
                          reason=reason)
        return texts

    def _alone(self, request: PageRequest, page: Page, budget: Budget,
               warnings: list[str]) -> str:
        media = media_for(request.path, request.mime, [page])
        cut: str | None = None
        reasons: list[str] = []
        for attempt in range(self.s.refusal_retries + 1):
            answer = self._ask(media, 1, attempt, budget)
            if answer.finish in DONE:
                return gemini_prompt.one_page(answer.text)
            reasons.append(answer.finish)
            if answer.finish == CUT:
                cut = answer.text
            self.log.info("gemini_page_retry", page=page.number, finish=answer.finish,
                          attempt=attempt + 1)
        if cut is not None:
            warnings.append(f"page {page.number}: text cut at max_output_tokens "
                            f"({self.s.max_output_tokens}): the end of the page may be missing")
            return gemini_prompt.one_page(cut)
        raise PageFailed(
            f"page {page.number}: Gemini gave no text ({', '.join(reasons)}) after "
            f"{len(reasons)} attempts", hint="Gemini refuses some pages (RECITATION: text it "
            "knows from elsewhere; SAFETY: content filters). Use engine tesseract or auto for "
            "this document, or on_chunk_failure: partial.")


def api_key(settings: GeminiConfig) -> str:
    """The key from ``api_key_file`` when set (a relative name is looked up in systemd's
    $CREDENTIALS_DIRECTORY), else from the variable ``api_key_env``. Never logged."""
    if settings.api_key_file is not None:
        path = settings.api_key_file
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if not path.is_absolute() and credentials:
            path = Path(credentials) / path
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise EngineUnavailable(f"cannot read the Gemini API key file {path} "
                                    f"({exc.strerror}); check the API key", hint=KEY_HINT) from None
        where = f"the file {path}"
    else:
        key = os.environ.get(settings.api_key_env, "").strip()
        where = f"${settings.api_key_env}"
    if not key:
        raise EngineUnavailable(f"no Gemini API key: {where} is empty or not set; check the "
                                f"API key", hint=KEY_HINT)
    return key


def create(ctx: EngineContext) -> Engine:
    """The factory of the registry: settings with the watch's options, shared Redis state."""
    settings = settings_for(ctx.cfg.engines.gemini, ctx.watch)
    if ctx.redis is None:
        raise EngineUnavailable("the gemini engine needs Redis (its rate limit and key state "
                                "are shared by every worker)")
    key = api_key(settings)
    guard = Guard(ctx.redis, ctx.prefix, fingerprint(key), settings.model,
                  probe_ttl=settings.timeout + settings.max_wait + 30, clock=ctx.clock,
                  settings=settings_fingerprint(settings))
    limiter = RateLimiter.per_minute(
        ctx.redis, ctx.prefix, f"gemini/{settings.model}",
        requests_per_minute=settings.requests_per_minute,
        tokens_per_minute=settings.tokens_per_minute, window=settings.rate_window)
    from ocr_daemon.engines.gemini.api import (
        GeminiApi,  # the SDK, imported only where the engine is built
    )

    api = GeminiApi(key, settings)
    sender = Sender(api, guard, limiter, settings, ctx.watch.name)
    batch = None
    if settings.mode != "interactive":
        from ocr_daemon.engines.gemini.batch_api import BatchApi

        batches = Batches(ctx.redis, ctx.prefix, settings, settings_fingerprint(settings),
                          lambda: BatchApi(api), clock=ctx.clock.time)
        batch = BatchMode(settings, batches, lambda: BatchApi(api), sender, ctx.watch.name)
    return GeminiEngine(settings, sender, batch)
