"""Tests of the scripts and benches outside the package load them by path: they are not importable modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def load_script(relative_path: str, name: str | None = None) -> ModuleType:
    """The file at `relative_path` (from the repository root) executed as module `name` (default: its stem)."""
    name = name or Path(relative_path).stem
    spec = importlib.util.spec_from_file_location(name, ROOT / relative_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    folder = str((ROOT / relative_path).parent)
    sys.path.insert(0, folder)  # as `python scripts/x.py` runs it: its siblings importable
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module
