"""04 export: the tables the notebook shows; a file that failed its check shows FAILED and why, never as good."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from medsft.evaluate import read_result
from medsft.export.save import ExportResult


def verdict_text(passed: bool | None) -> str:
    return "—" if passed is None else "passed" if passed else "FAILED"


def size_frame(result: ExportResult) -> Any:
    rows = [{**row, "check": verdict_text(row.get("passed"))} for row in result.size_table]
    return pd.DataFrame(rows).drop(columns="passed", errors="ignore").set_index("quantization")


def check_frame(result: ExportResult) -> Any:
    """Per GGUF and task: verdict and reasons, template and stop checks, first-token agreement, accuracy vs 16-bit."""
    rows = []
    for item in result.files:
        check = item["verification"]
        base = {
            "quantization": item["quantization"],
            "check": verdict_text(item.get("passed")),
            "file": item.get("status", "—"),
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
            rows.append({**base, **extra, "why it failed": "; ".join(item.get("reasons", []))})
    return pd.DataFrame(rows)


def accuracy_results(result: ExportResult) -> list[Any]:
    """The quantization check's results (16-bit first) for `plots.accuracy_bars`, a failed file's model `(FAILED)`."""
    failed = {f"gguf-{quant}" for quant in result.failed}
    results = [read_result(path) for path in sorted((result.run_dir / "export").glob("eval_*.json"))]
    return [dataclasses.replace(r, model=f"{r.model} (FAILED)") if r.model in failed else r for r in results]
