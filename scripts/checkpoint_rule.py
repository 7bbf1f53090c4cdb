"""Which checkpoint rule should the PubMedQA recipe use? (issue #23: the rule chosen by cross-validation)

    .venv/bin/python scripts/checkpoint_rule.py outputs/pubmedqa-cv --style answer

The default recipe keeps the checkpoint with the best accuracy on its 50 PubMedQA validation rows. On the CV folds
(166-167 held-out rows each, every checkpoint's yes/no/maybe log-likelihoods cached by `prior_correction.py`) this
replays that rule: many random 50-row draws from a fold's held-out rows pick a checkpoint as the trainer would
(best accuracy, the earliest on ties, the untrained model never), and the pick is scored on the fold's other rows.
Beside it, on the same other rows: the last step, the step with the best mean over the *other* folds
(leave-one-fold-out), and always-"yes". No test split is read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from prior_correction import fold_scores

SELECTION_ROWS = 50  # the default recipe's PubMedQA validation rows
DRAWS = 2000


def correct(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    return np.argmax(scores, axis=1) == gold


def replay(hits: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For each draw: (the picked step's index, each step's accuracy on the rows not drawn [draws, steps]).

    `hits` is [steps, rows] of correct answers; argmax keeps the earliest step on ties, as the trainer does."""
    steps, rows = hits.shape
    picked, held = np.empty(DRAWS, dtype=int), np.empty((DRAWS, steps))
    for d in range(DRAWS):
        drawn = np.zeros(rows, dtype=bool)
        drawn[rng.choice(rows, SELECTION_ROWS, replace=False)] = True
        picked[d] = int(np.argmax(hits[:, drawn].mean(axis=1)))
        held[d] = hits[:, ~drawn].mean(axis=1)
    return picked, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path, help="the sweep folder (outputs/pubmedqa-cv), with checkpoints or caches")
    parser.add_argument("--style", default="answer", help="the PubMedQA training style whose folds to read")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 50-row draws")
    args = parser.parse_args()
    folds = sorted(args.sweep.glob(f"*style{args.style}_validation_fold-*"))
    if not folds:
        raise SystemExit(f"{args.sweep}: no '{args.style}' fold folders")
    scores = [fold_scores(fold) for fold in folds]
    names = sorted(set.intersection(*(set(s) for s in scores)) - {"base"}, key=lambda n: int(n.split("-")[1]))
    steps = [int(n.split("-")[1]) for n in names]
    hits = [np.array([correct(*s[n]) for n in names]) for s in scores]  # per fold: [steps, rows]
    rng = np.random.default_rng(args.seed)
    print(f"{len(folds)} '{args.style}' folds; steps {steps}; {DRAWS} draws of {SELECTION_ROWS} rows per fold")
    print("| fold | best of 50 rows (picks per step) | last step | best step of the other folds | always-yes |")
    print("| --- | --- | --- | --- | --- |")
    totals: dict[str, list[float]] = {"rule": [], "last": [], "other": [], "yes": []}
    for i, fold_hits in enumerate(hits):
        picked, held = replay(fold_hits, rng)
        others = np.mean([h.mean(axis=1) for j, h in enumerate(hits) if j != i], axis=0)
        other_step = int(np.argmax(others))
        # Always-"yes" on the fold: what its share on the rows not drawn averages to over the draws.
        yes = float(np.mean(scores[i][names[0]][1] == 0))
        values = {
            "rule": float(np.mean(held[np.arange(DRAWS), picked])),
            "last": float(np.mean(held[:, -1])),
            "other": float(np.mean(held[:, other_step])),
            "yes": yes,
        }
        for key, value in values.items():
            totals[key].append(value)
        counts = ", ".join(f"{s}: {np.mean(picked == k):.0%}" for k, s in enumerate(steps))
        print(f"| {i} | {values['rule']:.3f} ({counts}) | {values['last']:.3f} | {values['other']:.3f} "
              f"(step {steps[other_step]}) | {yes:.3f} |")  # fmt: skip
    print(f"| mean | {np.mean(totals['rule']):.3f} | {np.mean(totals['last']):.3f} | {np.mean(totals['other']):.3f} "
          f"| {np.mean(totals['yes']):.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
