"""The FastAPI application: collaborators, error bodies, auth, routers and the static page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ocr_daemon import log
from ocr_daemon.api.auth import Guard
from ocr_daemon.api.documents import locate, view
from ocr_daemon.api.events import EventHub
from ocr_daemon.api.uploads import Uploads
from ocr_daemon.errors import BadRequest, OcrDaemonError
from ocr_daemon.intake.dispatch import Dispatcher, Send
from ocr_daemon.record.layout import WatchPaths
from ocr_daemon.runtime import Runtime

STATIC = Path(__file__).parent / "static"

# HTTP status of each error code; everything else is a 500 (a bug) or 503 (retryable).
STATUS = {
    "not_found": 404, "unauthorized": 401, "bad_request": 400, "conflict": 409,
    "too_large": 413, "unsupported_type": 415, "empty_file": 400, "config_invalid": 400,
    "service_unavailable": 503, "storage_error": 507,
}


@dataclass
class Services:
    """What the routes use; one per application."""

    rt: Runtime
    dispatcher: Dispatcher
    uploads: Uploads
    hub: EventHub
    guard: Guard

    def paths(self, watch_name: str | None) -> WatchPaths:
        name = watch_name or self.rt.cfg.api.watch or self.rt.cfg.watches[0].name
        try:
            watch = self.rt.cfg.watch(name)
        except KeyError:
            names = ", ".join(w.name for w in self.rt.cfg.watches)
            raise BadRequest(f"no watch named {name!r}", hint=f"Watches: {names}.") from None
        return WatchPaths.of(watch)

    def view(self, doc_id: str) -> dict[str, Any]:
        return view(locate(self.rt.cfg, self.rt.store, doc_id))


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def authorized(request: Request) -> None:
    services(request).guard.check(request.headers.get("authorization"))


def error_body(exc: OcrDaemonError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "hint": exc.hint,
            "retryable": exc.retryable}


def error_response(exc: OcrDaemonError) -> JSONResponse:
    status = STATUS.get(exc.code, 503 if exc.retryable else 500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(exc), status_code=status, headers=headers)


def create_app(rt: Runtime, send: Send, tokens: list[str]) -> FastAPI:
    from ocr_daemon.api import routes_compat, routes_v1

    dispatcher = Dispatcher(rt, send)
    uploads = Uploads(rt, dispatcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = Services(rt, dispatcher, uploads, EventHub(rt.store, lambda i: svc.view(i)),
                       Guard(tokens))
        app.state.services = svc
        yield
        svc.hub.close()

    app = FastAPI(title="ocr-daemon", version="1", lifespan=lifespan,
                  description="Upload documents for OCR, follow their progress, read their "
                  "text. Every error is a JSON object with `code`, `message` and `hint`.")
    if rt.cfg.api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=rt.cfg.api.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"])

    @app.exception_handler(OcrDaemonError)
    async def _ours(_request: Request, exc: OcrDaemonError) -> JSONResponse:
        if STATUS.get(exc.code, 500) >= 500:
            log.get().warning("api_error", code=exc.code, error=exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        return JSONResponse({"code": "bad_request", "message": problems,
                             "hint": "See the API's schema at /docs.", "retryable": False},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "bad_request"
        return JSONResponse({"code": code, "message": str(exc.detail),
                             "hint": "See the API's schema at /docs.", "retryable": False},
                            status_code=exc.status_code)

    guarded = [Depends(authorized)]
    app.include_router(routes_v1.router, prefix="/v1", dependencies=guarded)
    app.include_router(routes_v1.open_router, prefix="/v1")
    app.include_router(routes_compat.router, prefix="/api", dependencies=guarded)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app
