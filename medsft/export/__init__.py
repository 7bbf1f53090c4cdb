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
upload), `save` (the orchestration), `views` (the notebook's tables). The llama.cpp toolchain itself is
`medsft.export.llamacpp_toolchain`; chat is `medsft.export.chat`, the local server `medsft.export.server`.
"""

from medsft.export.gguf import ExportError, check_quantizations
from medsft.export.hub import push_to_hub
from medsft.export.save import ExportResult, export_run
from medsft.export.verify import VerificationError

__all__ = ["ExportError", "ExportResult", "VerificationError", "check_quantizations", "export_run", "push_to_hub"]
