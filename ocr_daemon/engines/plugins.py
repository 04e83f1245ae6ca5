"""Engine plugins: modules named in ``engines.plugins`` that add engines by name.

A plugin is an importable module with ``ENGINES: dict[str, factory]``, each factory taking an
``EngineContext`` and returning an engine (see ``engines.base``), as OCRmyPDF's ``--plugin``.
This module imports nothing of ours, so the configuration can check engine names with it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def load(modules: Sequence[str], reserved: Iterable[str] = ()) -> dict[str, Callable[..., Any]]:
    """Engine name -> factory of every plugin module, in order.

    Raises ValueError naming the ``engines.plugins`` entry at fault: a module that cannot be
    imported, has no ``ENGINES`` mapping, or names an engine already taken.
    """
    taken = set(reserved)
    found: dict[str, Callable[..., Any]] = {}
    for i, name in enumerate(modules):
        where = f"engines.plugins[{i}]"
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"{where}: cannot import {name!r} ({exc})") from None
        engines = getattr(module, "ENGINES", None)
        if not isinstance(engines, dict) or not all(
                isinstance(k, str) and callable(v) for k, v in engines.items()):
            raise ValueError(f"{where}: {name!r} has no ENGINES mapping of name to factory")
        for engine, factory in engines.items():
            if engine in taken or engine in found:
                raise ValueError(f"{where}: engine {engine!r} of {name!r} is already defined")
            found[engine] = factory
    return found
