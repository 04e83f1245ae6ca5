"""The one error hierarchy: every error says its code, whether it is retryable, and what to do."""

from __future__ import annotations

from enum import IntEnum, unique
from typing import Any, ClassVar


@unique
class ExitCode(IntEnum):
    """What `ocr-daemon` exits with (README, "Exit codes"): one meaning per number."""

    OK = 0
    ERROR = 1  # an unexpected error (a bug), or a command that failed without a cause below
    # The configuration is invalid; click exits 2 for a bad command line too: either way
    # nothing was started, and the message names what to fix.
    CONFIG_INVALID = 2
    MISSING_DEPENDENCY = 3  # a program we need (redis-server, tesseract) is not installed
    SERVICE_UNAVAILABLE = 4  # Redis cannot be reached
    ALREADY_RUNNING = 5  # another `ocr-daemon run` holds this state_dir
    NOT_FOUND = 6  # no such document (cancel, lookup)
    INSTALL_REFUSED = 7  # install-systemd: an option cannot go into a unit file
    ONLINE_CHECK_FAILED = 8  # config check --online: the Gemini key or model does not work


class OcrDaemonError(Exception):
    """Base of every error the daemon raises on purpose.

    ``code`` is a stable machine-readable name (it goes into error sidecars), ``retryable``
    says whether trying the same thing later may succeed, ``hint`` tells the user what to do
    and ``exit_code`` is what the CLI exits with when the error reaches it.
    """

    code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False
    # A condition to wait out (a full disk, a paused engine): retried without end, at the
    # longest backoff, never counted against max_retries.
    waits: ClassVar[bool] = False
    hint: ClassVar[str] = "This is a bug in ocr-daemon: please report it with the logs."
    exit_code: ClassVar[ExitCode] = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint  # type: ignore[misc]

    def should_retry(self, retries_left: bool) -> bool:
        """The retry decision: a retryable error is tried again while retries are left; a
        wait (``waits``) is tried again without end."""
        return self.retryable and (retries_left or self.waits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "hint": self.hint,
        }


# --- configuration and environment -------------------------------------------------------


class ConfigError(OcrDaemonError):
    """The configuration is invalid; ``problems`` lists ``key.path: reason`` lines."""

    code = "config_invalid"
    hint = "Fix the listed keys in the configuration file (see config/ocr-daemon.example.yaml)."
    exit_code = ExitCode.CONFIG_INVALID

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class MissingDependency(OcrDaemonError):
    """A program the daemon needs (redis-server, tesseract) is not installed."""

    code = "missing_dependency"
    exit_code = ExitCode.MISSING_DEPENDENCY


class NotFound(OcrDaemonError):
    """A command named a document that does not exist (or has already ended)."""

    code = "not_found"
    hint = ("Give a document id, the path of its original, or of one of its sidecars; "
            "`ocr-daemon status` lists the documents in flight.")
    exit_code = ExitCode.NOT_FOUND


class ServiceUnavailable(OcrDaemonError):
    """Redis (or another service) cannot be reached right now."""

    code = "service_unavailable"
    retryable = True
    hint = "Check that Redis is running and reachable at redis.url; work resumes when it is."
    exit_code = ExitCode.SERVICE_UNAVAILABLE


class AlreadyRunning(OcrDaemonError):
    """Another `ocr-daemon run` holds the instance lock in this state_dir."""

    code = "already_running"
    hint = "Stop the other instance, or give this one its own state_dir."
    exit_code = ExitCode.ALREADY_RUNNING


class InstallError(OcrDaemonError):
    """`install-systemd` cannot write units from these options (a bad name, a relative path)."""

    code = "install_error"
    hint = "See `ocr-daemon install-systemd --help`."
    exit_code = ExitCode.INSTALL_REFUSED


# --- a document's work in flight ---------------------------------------------------------


class ChunksPending(OcrDaemonError):
    """The ending was asked for while some chunks have not ended (a duplicate chunk delivery
    fired a window's callback early): the ending task looks again a few seconds later."""

    code = "chunks_pending"
    retryable = True
    hint = "Nothing to do: the document ends once its chunks have."


# --- one document's input ----------------------------------------------------------------


class DocumentError(OcrDaemonError):
    """Permanent for this input: the document goes to failed/ with this error."""

    code = "document_error"
    hint = "Check the file; fix it and drop it into the inbox again."


class EmptyFile(DocumentError):
    code = "empty_file"
    hint = "The file has no content (zero bytes): the upload may have failed; send it again."


class TruncatedDocument(DocumentError):
    code = "truncated_document"
    hint = ("The file ends before its format's end marker (PDF %%EOF, PNG IEND, JPEG EOI, "
            "TIFF directories) and stayed unchanged for incomplete_grace_seconds: the upload "
            "or scan was cut off. Send the whole file again.")


class UnsupportedType(DocumentError):
    code = "unsupported_type"
    hint = "Only PDF, PNG, JPEG and TIFF files are processed (decided from the content)."


class CorruptDocument(DocumentError):
    code = "corrupt_document"
    hint = "The file is damaged or truncated: export or scan it again."


class EncryptedDocument(DocumentError):
    code = "encrypted_document"
    hint = ("The PDF needs a password to open: remove the password and drop it again, or add "
            "it to the watch's passwords_file (one password a line).")


class TooLarge(DocumentError):
    code = "too_large"
    hint = "Split the document or raise the limit (max_pages / max_file_bytes) for this watch."


class NoTextLayer(DocumentError):
    code = "no_text_layer"
    hint = "Use engine tesseract, gemini or auto for scanned documents."


class PageFailed(DocumentError):
    """The engine could not produce text for a page (refusal, unreadable image)."""

    code = "page_failed"


class ChunksFailed(DocumentError):
    """Some chunks failed for good and the watch's on_chunk_failure policy is `fail`."""

    code = "chunks_failed"


class WorkerCrashed(DocumentError):
    """A worker process died every time it worked on this (workers.max_redeliveries)."""

    code = "worker_crashed"
    hint = ("A worker process died each time it worked on this document (out of memory, a "
            "crash in a library, the hard time limit). Check the worker logs and limits, then "
            "send it again with `ocr-daemon retry`.")


class Stalled(DocumentError):
    """The document's work was lost again and again (max_document_attempts reached)."""

    code = "stalled"
    hint = ("Check the worker logs for crashes on this document (memory, time limits), "
            "then send it again with `ocr-daemon retry`.")


class Cancelled(DocumentError):
    code = "cancelled"
    hint = "The document was cancelled; use `ocr-daemon retry` to process it again."


# --- engines ------------------------------------------------------------------------------


class EngineError(OcrDaemonError):
    code = "engine_error"


class TransientEngineError(EngineError):
    """Try again later: rate limits, timeouts, 5xx, connection errors."""

    code = "engine_transient"
    retryable = True
    hint = "A temporary engine problem; the daemon retries with backoff."

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientEngineError):
    """429 for a per-minute quota: retry after the server's delay (or with backoff)."""

    code = "engine_rate_limited"


class ServerError(TransientEngineError):
    """5xx, 408, timeouts, connection errors: retry with backoff and jitter."""

    code = "engine_server_error"


class QuotaExhausted(TransientEngineError):
    """429 for a per-day quota: every worker pauses; no retry chunk by chunk."""

    code = "engine_quota_exhausted"

    def __init__(self, message: str, *, quota_id: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.quota_id = quota_id


class EnginePaused(TransientEngineError):
    """The engine is paused for every worker (a daily quota is spent) until ``retry_after``:
    the work waits, and the wait does not count against its retries."""

    code = "engine_paused"
    waits = True
    hint = "The engine's daily quota is spent; work resumes by itself when it resets."


class WaitingForBatch(TransientEngineError):
    """The chunk's request is in a Gemini Batch API job (or about to be): the work waits, and
    the wait does not count against its retries."""

    code = "waiting_for_batch"
    waits = True
    hint = ("The chunk goes through the Gemini Batch API (engines.gemini.mode); results come "
            "within 24 hours, most often minutes.")

    def __init__(self, message: str, *, retry_after: float | None = None,
                 job: str | None = None, state: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.job = job
        self.state = state

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "job": self.job, "job_state": self.state}


class BatchJobFailed(EngineError):
    """A Batch API job failed, expired or was cancelled and engines.gemini.batch_fallback is
    `fail`."""

    code = "batch_failed"
    hint = ("Send the document again (`ocr-daemon retry`), or set engines.gemini."
            "batch_fallback: interactive to finish such chunks interactively.")


class EngineUnavailable(EngineError):
    """Permanent for the engine (bad API key, engine not installed): stop sending to it."""

    code = "engine_unavailable"
    hint = "Check the engine's configuration (API key, installed programs)."


class KeyRejected(EngineUnavailable):
    """The key (or its project) is refused: permanent for the engine until the key changes."""

    hint = ("Check the API key: put a valid key in the variable named by "
            "engines.gemini.api_key_env (or the file engines.gemini.api_key_file), restart the "
            "workers, then send the failed documents again (`ocr-daemon retry`).")

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class SettingRefused(EngineUnavailable):
    """The engine refuses a setting (a model not found or retired, a thinking setting it does
    not take): permanent for the engine until the configuration changes. ``key`` names it."""

    def __init__(self, message: str, *, key: str, reason: str) -> None:
        super().__init__(message, hint=f"Fix {key} in the configuration (or the watch's "
                                       f"engine_options), restart the workers, then send the "
                                       f"failed documents again (`ocr-daemon retry`).")
        self.key = key
        self.reason = reason


# --- storage -----------------------------------------------------------------------------


class StorageError(OcrDaemonError):
    """A folder is full or not writable: the document waits and retries, original kept."""

    code = "storage_error"
    retryable = True
    waits = True
    hint = "Free disk space or fix permissions on the watch folders; the document is retried."


def describe(exc: BaseException) -> dict[str, Any]:
    """The error record for any exception reaching a boundary (unknown ones are bugs)."""
    if isinstance(exc, OcrDaemonError):
        return exc.to_dict()
    return {
        "code": OcrDaemonError.code,
        "message": f"{type(exc).__name__}: {exc}",
        "retryable": False,
        "hint": OcrDaemonError.hint,
    }


# --- the HTTP API ----------------------------------------------------------------------


class Unauthorized(OcrDaemonError):
    """A request to the API without a valid bearer token."""

    code = "unauthorized"
    hint = "Send the header `Authorization: Bearer <token>` with a token of api.tokens."


class BadRequest(OcrDaemonError):
    """A request the API cannot act on as sent (a missing field, an unknown watch)."""

    code = "bad_request"
    hint = "See the API's schema at /docs."


class Conflict(OcrDaemonError):
    """The document is not in a state that allows this (reprocess a running one, ...)."""

    code = "conflict"
    hint = "Read the document's state with GET /v1/documents/{id} and try what it allows."
