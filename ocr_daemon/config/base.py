"""What every part of the configuration shares: names, limits, the strict base model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

CONFIG_ENV = "OCR_DAEMON_CONFIG"
OVERRIDE_PREFIX = "OCR_DAEMON__"
BUILTIN_ENGINES = ("auto", "pdftext", "tesseract", "gemini")  # plus engines.plugins' engines
OutputName = Literal["text", "json", "pdf"]
DEFAULT_PATTERNS = ["*.pdf", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff"]
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]


# The watch keys an engine's settings may take from engine_options (each is a field of at
# least one engine settings model below: tests/test_one_source.py pins it).
ENGINE_OPTIONS = frozenset({"model", "prompt", "languages", "dpi", "psm", "timeout",
                            "max_output_tokens", "mode", "thinking_level", "thinking_budget"})


def _folder_problem(path: Path, *, writable: bool) -> str | None:
    """Why ``path`` is not, and cannot become, a folder (None when it can). Nothing is
    created: validating a configuration has no side effects (``record.layout.create_folders``
    is the explicit step of the commands that need the folders)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        reason = "File exists" if probe == path else "Not a directory"
        return f"not a directory and cannot be created ({reason})"
    if probe != path and not os.access(probe, os.W_OK | os.X_OK):
        return "not a directory and cannot be created (Permission denied)"
    if probe == path and writable and not os.access(path, os.W_OK | os.X_OK):
        return "directory is not writable by this user"
    return None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


