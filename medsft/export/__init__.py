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

from medsft.export.gguf import ExportError, check_quantizations
from medsft.export.hub import push_to_hub
from medsft.export.save import (
    ExportPlan,
    ExportResult,
    check_export,
    export_run,
    gguf_staging,
    plan_export,
    prepare_folders,
    save_ggufs,
    unchecked_files,
)
from medsft.export.verify import VerificationError

__all__ = [
    "ExportError", "ExportPlan", "ExportResult", "VerificationError", "check_export", "check_quantizations",
    "export_run", "gguf_staging", "plan_export", "prepare_folders", "push_to_hub", "save_ggufs", "unchecked_files",
]  # fmt: skip
