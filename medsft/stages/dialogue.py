"""03 evaluate, the `dialogue` task: the tables and examples the notebook shows for held-out ChatDoctor dialogues."""

from __future__ import annotations

from typing import Any

import pandas as pd

from medsft.data.dialogue_split import load_dialogue_eval
from medsft.evaluate.dialogue import METRICS, key_points
from medsft.evaluate.keypoints import condition_group
from medsft.evaluate.report import ci_text

LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "key_point_hit_rate": "key-point hit rate"}


def interval_text(value: float | None, ci: list[float | None]) -> str:
    return "–" if value is None else f"{value:.3f} {ci_text(ci)}"


def dialogue_frame(comparison: Any) -> Any:
    """Per model each metric's mean and bootstrap 95% interval, then each paired difference to the first model."""
    rows = []
    for row in comparison.table:
        out = {"model": row["model"], "n": row["n"], "median reply words": row["reply_words"]}
        out.update({LABELS[name]: interval_text(row[name], row[f"{name}_ci"]) for name in METRICS})
        rows.append(out)
    for pair in comparison.pairs:
        out = {"model": f"{pair['model']} − {pair['baseline']}", "n": comparison.table[0]["n"]}
        out.update({LABELS[name]: interval_text(pair[f"{name}_diff"], pair[f"{name}_diff_ci"]) for name in METRICS})
        rows.append(out)
    return pd.DataFrame(rows)


def dialogue_groups_frame(comparison: Any) -> Any:
    """Key-point hit rate per condition group (rows) for each model, with its bootstrap 95% interval."""
    rows = []
    groups = sorted({group for result in comparison.results for group in result.breakdown})
    for group in groups:
        blocks = {result.model: result.breakdown.get(group) for result in comparison.results}
        first = next(block for block in blocks.values() if block)
        row = {"condition group": group, "dialogues": first["n"], "with key points": first["key_point_dialogues"]}
        for model, block in blocks.items():
            row[model] = interval_text(block["key_point_hit_rate"], block["key_point_hit_rate_ci"]) if block else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def key_point_examples(n: int = 6) -> Any:
    """The key-point rule (`medsft.evaluate.keypoints`) on the first `n` held-out references, for a reader to judge."""
    items = load_dialogue_eval(n)
    return pd.DataFrame([
        {"id": item.id, "reference": item.reference, "condition": points.condition or "–",
         "group": condition_group(points.condition), "tests and treatments": "\n".join(points.items) or "–"}
        for item, points in zip(items, key_points(items), strict=True)
    ])  # fmt: skip


def dialogue_side_by_side(comparison: Any, n: int = 3) -> Any:
    """The first `n` dialogues: patient, reference and its key points, each reply with them hit (✓) or missed (✗)."""
    patients = {item.id: item.patient for item in load_dialogue_eval()}
    rows = []
    for i, first in enumerate(comparison.results[0].questions[:n]):
        row = {"patient": patients.get(first["id"], first["id"]), "reference": first["reference"]}
        row["key points"] = "\n".join(first["key_points"]) or "–"
        for result in comparison.results:
            record = result.questions[i]
            hits = zip(record["key_points"], record["hits"], strict=True)
            marks = " ".join(("✓ " if hit else "✗ ") + point for point, hit in hits)
            row[result.model] = f"{record['output']}\n\n[{marks}] ROUGE-L {record['rougeL']:.2f}"
        rows.append(row)
    return pd.DataFrame(rows)
