"""Export and offline use: `export_run("outputs/<run-id>")` writes verified files and a model card (docs/export.md)."""

import importlib
from typing import Any

# Names are imported on first use (PEP 562), so `python -m medsft.export.llamacpp_toolchain setup` runs that module
# once, not after this package has already imported it through `save`.
_HOMES = {
    "ExportError": "gguf", "check_quantizations": "gguf", "push_to_hub": "hub", "VerificationError": "verify",
    **dict.fromkeys(("ExportPlan", "ExportResult", "check_export", "export_run", "gguf_staging", "plan_export",
                     "prepare_folders", "save_ggufs", "unchecked_files"), "save"),
}  # fmt: skip
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'medsft.export' has no attribute {name!r}")
    return getattr(importlib.import_module(f"medsft.export.{_HOMES[name]}"), name)
