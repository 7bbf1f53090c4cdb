"""Synthetic tasks: labels from the fact tables, so a reply's format and stated labels are scored without a judge."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from medsft.data import PRIMARY_LABEL, SyntheticCase, expected_label, parse_synthetic_answer
from medsft.data.synthetic import STEPS
from medsft.evaluate.results import Scored, TaskResult
from medsft.evaluate.stats import accuracy
from medsft.evaluate.transformers_scorer import GenerationSettings, Messages, Scorer, generated_result
from medsft.tasks import TASKS

Case = SyntheticCase | Mapping[str, Any]


def case_messages(case: Case) -> Messages:
    """The prompt turns of a case (everything before the reference answer)."""
    if isinstance(case, SyntheticCase):
        return [{"role": "user", "content": case.prompt}]
    return [m for m in case["messages"] if m["role"] != "assistant"]


def case_id(case: Case) -> str:
    return case.id if isinstance(case, SyntheticCase) else case["id"]


def format_compliance(text: str, steps: int = STEPS) -> dict[str, bool]:
    """Whether a reply has a closed `<think>` block, numbered steps 1..`steps` in it, and text after it."""
    match = re.search(r"<think>(.*?)</think>(.*)", text, flags=re.DOTALL)
    if not match:
        return {"think": False, "steps": False, "final_answer": False}
    numbers = [int(n) for n in re.findall(r"^\s*(?:step\s*)?(\d+)\s*[.):]", match.group(1), re.MULTILINE | re.I)]
    return {"think": True, "steps": numbers == list(range(1, steps + 1)), "final_answer": bool(match.group(2).strip())}


def score_synthetic_replies(cases: Sequence[Case], replies: Sequence[str]) -> list[dict[str, Any]]:
    """Per-case records: format checks, expected and parsed labels, per-label correctness, the reply."""
    records = []
    for case, reply in zip(cases, replies, strict=True):
        meta = None if isinstance(case, SyntheticCase) else case.get("meta", case)
        domain = case.domain if meta is None else meta["domain"]
        primary = PRIMARY_LABEL[domain]
        expected = expected_label(case)
        parsed = parse_synthetic_answer(domain, reply)
        fmt = format_compliance(reply)
        fmt["final_answer"] = fmt["final_answer"] and primary in parsed
        labels = {key: parsed.get(key, "").lower() == str(value).lower() for key, value in expected.items()}
        records.append({
            "id": case_id(case), "domain": domain, "severity": case.severity if meta is None else meta.get("severity"),
            "gold": expected, "pred": parsed, "correct": labels.get(primary, False), "parsed": primary in parsed,
            "labels": labels, "format": fmt, "compliant": all(fmt.values()), "output": reply,
        })  # fmt: skip
    return records


def _rate(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def label_constant(golds: Sequence[Any]) -> dict[str, Any]:
    """One label's most frequent gold value and its share: the bar that label's accuracy has to clear."""
    value, count = Counter(str(gold).lower() for gold in golds).most_common(1)[0]
    return {"answer": value, "acc": count / len(golds)}


def summarize_synthetic(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall and per domain: accuracies, format compliance, and per severity (missing HIGH risk is worse)."""

    def block(rows: list[dict[str, Any]]) -> dict[str, Any]:
        # Wilson: sound at the small per-domain counts and at 0% or 100%, where a bootstrap collapses to a point
        by_severity: dict[str, list[bool]] = {}
        for r in rows:
            by_severity.setdefault(str(r["severity"]), []).append(r["correct"])
        label_names = sorted({k for r in rows for k in r["labels"]})
        return {
            "n": len(rows), **accuracy([r["correct"] for r in rows]), "acc_ci_method": "wilson",
            "unparseable": sum(not r["parsed"] for r in rows) / len(rows),
            "format_compliance": _rate([r["compliant"] for r in rows]),
            "format": {k: _rate([r["format"][k] for r in rows]) for k in ("think", "steps", "final_answer")},
            "label_accuracy": {k: _rate([r["labels"][k] for r in rows if k in r["labels"]]) for k in label_names},
            "label_constant": {k: label_constant([r["gold"][k] for r in rows if k in r["gold"]]) for k in label_names},
            "by_severity": {k: {"n": len(v), "acc": _rate(v)} for k, v in sorted(by_severity.items())},
        }  # fmt: skip

    domains = sorted({r["domain"] for r in records})
    return {"overall": block(records), "domains": {d: block([r for r in records if r["domain"] == d]) for d in domains}}


def evaluate_synthetic(scorer: Scorer, cases: Sequence[Case], max_new_tokens: int = 384, seed: int = 0,
                       task: str = "synthetic") -> TaskResult:  # fmt: skip
    """A greedy reply per case, scored on format and labels per domain (`correct`: the primary label)."""
    generated = [name for name, spec in TASKS.items() if not spec.multiple_choice]
    if task not in generated:
        raise ValueError(f"unknown synthetic task '{task}'; choose from {', '.join(generated)}")

    def score(replies: list[str]) -> Scored:
        records = score_synthetic_replies(cases, replies)
        summary = summarize_synthetic(records)
        return records, summary["overall"], summary["domains"]

    generation = GenerationSettings(max_new_tokens, seed=seed)
    return generated_result(scorer, task, "synthetic", [case_messages(c) for c in cases], generation, score)
