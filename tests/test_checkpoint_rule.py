"""scripts/checkpoint_rule.py: the replayed rule picks as the trainer does (best on the drawn rows, the earliest
step on ties) and scores each step only on the rows it did not draw."""

from __future__ import annotations

import numpy as np
from script_loader import load_script


def test_a_tie_keeps_the_earliest_step_and_scores_count_only_undrawn_rows() -> None:
    rule = load_script("scripts/checkpoint_rule.py")
    rows = 200  # 50 drawn: about a quarter of the draws miss all five rows below
    tied = np.ones((3, rows), dtype=bool)  # every step right on every row: a tie everywhere
    picked, held = rule.replay(tied, np.random.default_rng(0))
    assert (picked == 0).all() and (held == 1.0).all()

    hits = np.zeros((2, rows), dtype=bool)
    hits[1, :5] = True  # the later step is right on five rows only
    picked, held = rule.replay(hits, np.random.default_rng(1))
    drew_some = picked == 1  # a draw that caught one of the five rows picks the later step
    assert drew_some.any() and (~drew_some).any()
    # Rows drawn are left out: a draw that caught k of the five leaves 5 - k right among the 150 not drawn.
    assert np.all(held[:, 0] == 0.0)
    assert np.all(held[drew_some, 1] < 5 / (rows - rule.SELECTION_ROWS))
    assert np.all(held[~drew_some, 1] == 5 / (rows - rule.SELECTION_ROWS))
