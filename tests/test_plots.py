from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from medsft.plots import plot_loss_curves, read_train_log  # noqa: E402


def test_loss_curves_draw_train_and_validation_series(tmp_path: Path):
    records = [{"step": 0, "eval_loss": 3.0}] + [{"step": s, "loss": 3.0 - 0.1 * s} for s in range(1, 11)]
    records.append({"step": 10, "eval_loss": 2.0})
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    figure = plot_loss_curves(tmp_path)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert list(lines["train loss"].get_xdata()) == list(range(1, 11))
    assert list(lines["validation loss"].get_ydata()) == [3.0, 2.0]
    assert read_train_log(tmp_path / "train_log.jsonl") == records
