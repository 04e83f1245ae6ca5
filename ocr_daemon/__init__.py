"""ocr-daemon: a watched-folder OCR ingestion daemon; the `ocr-daemon` command is its face."""

from importlib.metadata import PackageNotFoundError, version

from ocr_daemon.errors import OcrDaemonError

try:
    __version__ = version("ocr-daemon")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["OcrDaemonError", "__version__"]
