"""The generated sets: cases drawn from a seed with labels computed from the fact tables, always scored by
generation (`medsft.evaluate.synthetic`). `synthetic` holds reserved in-distribution cases no training case
can equal; `synthetic_ood` held-out facts and phrasings."""

from __future__ import annotations

from medsft.data.synthetic import synthetic_eval_cases, synthetic_ood_cases
from medsft.tasks.base import Task

TASKS = (
    Task("synthetic", "generated", generate=synthetic_eval_cases),
    Task("synthetic_ood", "generated", generate=synthetic_ood_cases),
)
