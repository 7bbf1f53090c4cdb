"""Tables the export notebook shows: sizes and measured RAM, and what each GGUF's checks found."""

from __future__ import annotations

from typing import Any

from medsft.export.save import ExportResult


def size_frame(result: ExportResult) -> Any:
    import pandas as pd

    return pd.DataFrame(result.size_table).set_index("quantization")


def check_frame(result: ExportResult) -> Any:
    """One row per GGUF and task: template and stop checks, first-token agreement, accuracy vs 16-bit."""
    import pandas as pd

    rows = []
    for item in result.files:
        check = item["verification"]
        base = {
            "quantization": item["quantization"],
            "template": "ok" if check["template_matches"] else "MISMATCH",
            "stops at end of turn": all(check["stop_tokens_end_generation"].values()),
            "first greedy tokens = 16-bit": f"{check['first_tokens_agree']}/{check['first_tokens_compared']}",
        }
        for task, acc in item["accuracy"].items() or {"—": None}.items():
            extra = {} if acc is None else {
                "task": task, "n": acc["n"], "GGUF acc": acc["acc"], "16-bit acc": acc["reference_acc"],
                "diff": acc["diff"], "diff 95% CI": acc["diff_ci"], "goal |diff| ≤": acc["goal"],
                "within goal": acc["within_goal"],
            }  # fmt: skip
            rows.append({**base, **extra})
    return pd.DataFrame(rows)


def accuracy_results(result: ExportResult) -> list[Any]:
    """The per-model results of the quantization check (16-bit first), for `medsft.evaluate.accuracy_bars`."""
    from medsft.evaluate import read_result

    return [read_result(path) for path in sorted((result.run_dir / "export").glob("eval_*.json"))]
