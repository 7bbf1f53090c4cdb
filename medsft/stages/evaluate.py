"""03 evaluate: base vs tuned on every evaluation task, and the tables and examples the notebook shows."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from medsft.config import RunConfig
from medsft.evaluate.compare import evaluate_models, finish
from medsft.evaluate.report import ci_text, counts_text, diff_text, discipline_rows, lm_eval_rows
from medsft.evaluate.synthetic import case_id, case_messages
from medsft.evaluate.transformers_scorer import model_name
from medsft.runs import Run, write_json
from medsft.tasks import describe_data, get_task, item_limit, load_items, run_items

log = logging.getLogger("medsft")


def eval_models(run: Run) -> dict[str, str]:
    """`base` is the configured model; `tuned` its adapter from the train stage, when there is one to compare."""
    models = {"base": run.config.model}
    adapter = run.find_artifact("adapter")
    if adapter is None:
        log.warning("no adapter in %s (the train stage did not run): evaluating the base model only", run.run_dir)
    elif run.config.dry_run:
        log.warning("dry run: the adapter belongs to a tiny random model, so only the base model is evaluated")
    else:
        models["tuned"] = str(adapter)
    return models


def evaluate_stage(run: Run, items: dict[str, list[Any]] | None = None, batch_size: int = 8) -> dict[str, Any]:
    """Base (and tuned) on `run_items(config)`, as `medsft eval` scores them: per-model files, `eval_results.json`."""
    config = run.config
    limits = {task: item_limit(config, task) for task in config.eval_tasks}
    items = items if items is not None else run_items(config)
    models = eval_models(run)
    results = evaluate_models(
        list(models.values()), items, config.eval_mode, config.seed, run.run_dir, False, batch_size, config,
        views={view: config.eval_chat_limit if view == "chat" else None for view in config.eval_views},
        max_new_tokens=config.eval_max_new_tokens,
    )  # fmt: skip
    comparisons = {task: finish(rs, config.seed, run.run_dir, False) for task, rs in results.items()}
    summary = {
        "models": {role: model_name(spec) for role, spec in models.items()},
        "specs": models,
        "data": eval_data(config, items),
        "settings": {
            "limits": limits,
            "mode": config.eval_mode,
            "views": config.eval_views,
            "chat_limit": config.eval_chat_limit,
            "max_new_tokens": config.eval_max_new_tokens,
            "seed": config.seed,
        },
        "tasks": {
            task: {k: v for k, v in c.to_dict().items() if k != "question_ids"} for task, c in comparisons.items()
        },
        "seconds": {r.task + "/" + r.model: r.settings.get("seconds") for rs in results.values() for r in rs},
    }
    write_json(run.path("eval_results.json"), summary, overwrite=True)  # a rerun of the notebook cell replaces it
    return comparisons


def eval_data(config: RunConfig, items: dict[str, list[Any]]) -> dict[str, Any]:
    """Where each task's items come from: the file and split with its sha256, or the generator and seed."""
    return {task: describe_data(task, seed=config.seed, n=len(items[task])) for task in config.eval_tasks}


def eval_data_frame(config: RunConfig, items: dict[str, list[Any]] | None = None) -> Any:
    """One row per task: the data file and split (or generator) its numbers come from, and how many items."""
    items = items if items is not None else run_items(config)
    rows = []
    for task, data in eval_data(config, items).items():
        files = data.get("files", [])
        names = ", ".join(Path(f["path"]).name for f in files)
        source = f"{data['source']} ({names})" if files else f"{data['generator']} (seed {data['seed']})"
        rows.append({
            "task": task, "split": data.get("split", "generated"), "source": source, "items": data["items"],
            "sha256": ", ".join(f["sha256"][:12] for f in files),
        })  # fmt: skip
    return pd.DataFrame(rows)


def scored_example(comparison: Any, config: RunConfig, index: int = 0) -> tuple[str, Any]:
    """One multiple-choice question exactly as scored: the prompt text (lm-eval's, no chat template) and, per
    choice, each model's summed log-likelihood of the continuation (` A`, ` yes`, ...); the highest wins."""
    task = get_task(comparison.task)
    item = load_items(comparison.task, index + 1, config.seed)[index]
    frame = pd.DataFrame({"continuation": [repr(c) for c in task.continuations(item)]})
    for result in comparison.results:
        frame[result.model] = result.questions[index]["scores"]
    frame["gold"] = ["✓" if i == item.answer else "" for i in range(len(frame))]
    return task.context(item), frame


def accuracy_frame(comparisons: dict[str, Any]) -> Any:
    """Per task and model: n, accuracy (`dialogue`: key-point hit rate), 95% interval, paired difference to base."""
    rows = []
    for task, comparison in comparisons.items():
        pairs = {pair["model"]: pair for pair in comparison.pairs}
        for row in comparison.table:
            pair = pairs.get(row["model"], {})
            rows.append({
                "task": task, "metric": row.get("metric", "accuracy"), "model": row["model"], "n": row["n"],
                "acc": row["acc"],
                "ci_low": row["acc_ci"][0], "ci_high": row["acc_ci"][1],
                "diff_vs_base": pair.get("diff"), "diff_ci": pair.get("diff_ci"), "mcnemar_p": pair.get("mcnemar_p"),
            })  # fmt: skip
    return pd.DataFrame(rows)


def leaderboard_frame(comparisons: dict[str, Any]) -> Any:
    """lm-eval's table (task, version, n-shot, metric, value, stderr) plus n and the 95% interval, every model."""
    rows = [row for c in comparisons.values() for result in c.results for row in lm_eval_rows(result)]
    return pd.DataFrame([{**row, "ci": ci_text(row["ci"])} for row in rows])


def baseline_frame(comparisons: dict[str, Any]) -> Any:
    """Per multiple-choice task and model: accuracy, paired difference to base and to the best constant answer (only
    the second says it learned more than the answer prior), and its answer distribution beside gold's."""
    rows = []
    for task, comparison in comparisons.items():
        found = comparison.baselines
        if not found:
            continue
        constant = found["constant"]
        vs_base = {pair["model"]: pair for pair in comparison.pairs}
        vs_constant = {row["model"]: row for row in found["vs_constant"]}
        gold = found["distribution"]["gold"]
        for row in comparison.table:
            model = row["model"]
            base, prior = vs_base.get(model), vs_constant[model]
            rows.append({
                "task": task, "model": model, "acc": row["acc"],
                "constant answer": constant["answer"], "constant acc": constant["acc"],
                "vs base": None if base is None else diff_text(base), "vs constant": diff_text(prior),
                "answers": counts_text(found["distribution"][model]), "gold": counts_text(gold),
            })  # fmt: skip
    return pd.DataFrame(rows)


def discipline_frame(comparisons: dict[str, Any]) -> Any:
    """MedMCQA by subject and each MMLU subject: n, accuracy and its Wilson 95% interval per model."""
    rows = discipline_rows([result for c in comparisons.values() for result in c.results])
    frame = pd.DataFrame([{**row, "ci": ci_text(row["ci"])} for row in rows])
    if frame.empty:
        return frame
    return frame.pivot_table(index=["task", "subject", "n"], columns="model", values=["acc", "ci"], aggfunc="first")


def breakdown_frame(comparison: Any) -> Any:
    """Accuracy per subject or domain and model, with n, and each model's 95% interval and format compliance if any."""
    rows = []
    for group, by_model in sorted(comparison.breakdown.items()):
        row = {"group": group, "n": next(iter(by_model.values()))["n"]}
        row.update({model: stats["acc"] for model, stats in by_model.items()})
        blocks = {result.model: result.breakdown.get(group, {}) for result in comparison.results}
        row.update({f"{m} 95% CI": ci_text(b["acc_ci"]) for m, b in blocks.items() if b.get("acc_ci") is not None})
        row.update(
            {f"{m} format": b["format_compliance"] for m, b in blocks.items() if b.get("format_compliance") is not None}
        )
        rows.append(row)
    return pd.DataFrame(rows)


def label_frame(comparison: Any) -> Any:
    """Per domain and label of a synthetic task: each model's accuracy beside the label's most frequent gold value's."""
    rows = []
    for domain in sorted(comparison.breakdown):
        blocks = {result.model: result.breakdown[domain] for result in comparison.results}
        first = next(iter(blocks.values()))
        for label, constant in first.get("label_constant", {}).items():
            row = {"domain": domain, "label": label, "n": first["n"]}
            row.update({model: block["label_accuracy"].get(label) for model, block in blocks.items()})
            row.update({"constant answer": constant["answer"], "constant acc": constant["acc"]})
            rows.append(row)
    return pd.DataFrame(rows)


def side_by_side(comparison: Any, config: RunConfig, n: int = 3) -> Any:
    """The first `n` generative items: prompt, expected labels and each model's reply, one column per model."""
    prompts = {case_id(c): case_messages(c)[-1]["content"] for c in load_items(comparison.task, n, config.seed)}
    rows = []
    for i, question in enumerate(comparison.results[0].questions[:n]):
        row = {"prompt": prompts.get(question["id"], question["id"]), "expected": question.get("gold")}
        row.update({result.model: result.questions[i].get("output", "") for result in comparison.results})
        rows.append(row)
    return pd.DataFrame(rows)


def show_text_table(frame: Any) -> Any:
    """A table whose long text cells keep their line breaks and wrap (for generations side by side)."""
    return frame.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left", "vertical-align": "top"})
