"""Export and offline use: adapter, merged 16-bit and GGUF (f16/q8_0/q5_k_m/q4_k_m), verified, with a card.

```python
from medsft.export import export_run
result = export_run("outputs/<run-id>")             # config.export_quantizations, checks, model card
result.size_table                                    # file size and measured RAM per file
```

A file that fails its check (too few first greedy tokens agree with 16-bit, or accuracy below 16-bit beyond its
goal) is kept as `*.rejected.gguf` and listed in `result.failed`, never under a good file's name.

Modules, one concern each: `gguf` (converter and quantizer calls, names), `verify` (template, stop tokens,
first tokens, the pass/fail verdict), `sizes` (file size, measured RAM), `card` (model card), `hub` (optional
upload), `save` (the orchestration); the notebook's tables are `medsft.stages.export`. The llama.cpp toolchain is
`medsft.export.llamacpp_toolchain`; chat is `medsft.export.chat`, the local server `medsft.export.server`.
"""

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
