"""Base vs tuned (vs GGUF...) on the identical question list: accuracy, paired differences to the first model."""

from __future__ import annotations

import gc
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsft import runs
from medsft.config import EVAL_MODES, RunConfig
from medsft.evaluate.cache import result_cache
from medsft.evaluate.dialogue import compare_dialogue, evaluate_dialogue, rescore
from medsft.evaluate.generative import evaluate_generative
from medsft.evaluate.multiple_choice import evaluate_multiple_choice
from medsft.evaluate.report import base_task, baselines
from medsft.evaluate.results import TaskResult, group_breakdown, slug, write_result
from medsft.evaluate.stats import accuracy, mcnemar_exact, paired_bootstrap
from medsft.evaluate.synthetic import evaluate_synthetic
from medsft.evaluate.transformers_scorer import GENERATE_BATCH_SIZE, HFScorer, Scorer
from medsft.tasks import get_task
from medsft.tasks import load_items as load_task_items

log = logging.getLogger("medsft")
VIEW_SAMPLE_SEED = 0  # the chat view's items (`view_items`): one fixed draw, the same in every run

ModelLike = str | Scorer


@dataclass
class Comparison:
    """Several models' results on one task, and how each differs from the first."""

    task: str
    results: list[TaskResult]
    table: list[dict[str, Any]]  # one row per model: name, n, acc, acc_ci
    pairs: list[dict[str, Any]]  # each model vs the first: diff, diff_ci, McNemar
    breakdown: dict[str, dict[str, Any]]  # subject/domain -> model -> {n, acc, acc_ci}
    baselines: dict[str, Any] = field(default_factory=dict)  # best constant answer, distributions (report.py)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "question_ids": self.results[0].ids, "table": self.table, "pairs": self.pairs,
                "breakdown": self.breakdown, "baselines": self.baselines,
                "files": [f"eval_{slug(r.task)}_{slug(r.model)}.json" for r in self.results]}  # fmt: skip


def normalize_mode(mode: str) -> str:
    """`loglikelihood` or `generate` (the old spelling `generative` is accepted)."""
    mode = {"generative": "generate"}.get(mode, mode)
    if mode not in EVAL_MODES:
        raise ValueError(f"unknown mode '{mode}'; choose one of {', '.join(EVAL_MODES)}")
    return mode


def evaluate_one(scorer: Scorer, task: str, items: Sequence[Any], mode: str, seed: int, num_fewshot: int = 0,
                 view: str = "raw", **gen: Any) -> TaskResult:  # fmt: skip
    """One scorer on one task in one mode (`num_fewshot` and `view`: multiple choice by log-likelihood only)."""
    kind = get_task(task).kind
    if kind == "dialogue":
        return evaluate_dialogue(scorer, items, seed=seed, **gen)
    if kind == "generated":
        return evaluate_synthetic(scorer, items, seed=seed, task=task, **gen)
    if normalize_mode(mode) == "generate":
        return evaluate_generative(scorer, task, items, seed=seed, **gen)
    return evaluate_multiple_choice(scorer, task, items, seed=seed, num_fewshot=num_fewshot, view=view)


def compare(models: Sequence[ModelLike], task: str, items: Sequence[Any] | None = None, mode: str = "loglikelihood",
            limit: int | None = None, seed: int = 0, run_dir: str | Path | None = None, overwrite: bool = False,
            batch_size: int = 8, **generation: Any) -> Comparison:  # fmt: skip
    """Each model (a spec, loaded one at a time, or a ready `Scorer`) on the same items; results go to `run_dir`."""
    items = list(items) if items is not None else load_task_items(task, limit, seed)
    results = evaluate_models(models, {task: items}, mode, seed, run_dir, overwrite, batch_size, **generation)
    return finish(results[task], seed, run_dir, overwrite)


def evaluate_models(models: Sequence[ModelLike], items: dict[str, Sequence[Any]], mode: str, seed: int,
                    run_dir: str | Path | None, overwrite: bool, batch_size: int, config: RunConfig | None = None,
                    views: Sequence[str] | Mapping[str, int | None] = ("raw",),
                    **generation: Any) -> dict[str, list[TaskResult]]:  # fmt: skip
    """Each model loaded once (not for cached results) for every task; `views` maps a view to its item limit."""
    if not models:
        raise ValueError("need at least one model to evaluate")
    limits = dict(views) if isinstance(views, Mapping) else dict.fromkeys(views)
    # every view for multiple choice by log-likelihood; a generated or generative result has only its own
    by_views = {task: get_task(task).multiple_choice and normalize_mode(mode) == "loglikelihood" for task in items}
    runs = [(task, view) for task in items for view in (list(limits) if by_views[task] else ["raw"])]
    results: dict[str, list[TaskResult]] = {view_name(task, view): [] for task, view in runs}
    engine = config.eval_engine if config is not None else "transformers"
    for model in models:
        cache = result_cache(model, scorer_settings(engine, batch_size), mode, seed, config, generation)
        scorer = None if isinstance(model, str) else model
        for task, view in runs:
            task_items, name = view_items(items[task], limits.get(view)), view_name(task, view)
            result = cache.load(name, task_items) if cache else None
            if result is not None and get_task(task).kind == "dialogue":
                result = rescore(result, task_items)  # cached replies, scored by the current rule
            if result is None:
                if scorer is None:
                    scorer = load_scorer(model, engine, batch_size, config)
                if view == "chat" and not getattr(getattr(scorer, "tokenizer", None), "chat_template", None):
                    log.warning("%s has no chat template: no chat view of %s", scorer.name, task)
                    continue
                result = evaluate_one(scorer, task, task_items, mode, seed, view=view, **generation)
                spec = {"spec": model} if isinstance(model, str) else {"name": scorer.name}
                result.model_spec = {**spec, "scorer": type(scorer).__name__}
                if cache:
                    cache.store(name, task_items, result)
            measure = "key-point hit rate" if result.mode == "dialogue" else "acc"  # what a result's `acc` measures
            log.info("%s on %s: %s %.3f (n=%d)", result.model, result.task, measure, result.metrics["acc"], result.n)
            if run_dir is not None:
                write_result(result, run_dir, overwrite)
            results[name].append(result)
        if isinstance(model, str):
            del scorer
            gc.collect()  # free this model's weights before the next one loads
    return {name: found for name, found in results.items() if found}


def view_items(items: Sequence[Any], limit: int | None) -> list[Any]:
    """`limit` items, one fixed draw in file order, not the first N (docs/evaluation.md#two-scoring-views)."""
    items = list(items)
    if limit is None or limit >= len(items):
        return items
    return [items[i] for i in sorted(random.Random(VIEW_SAMPLE_SEED).sample(range(len(items)), limit))]


def view_name(task: str, view: str) -> str:
    return task if view == "raw" else f"{task}_{view}"


def scorer_settings(engine: str, batch_size: int) -> dict[str, Any]:
    """What identifies the scorer in a cached result: its class, and the batching that can move a float."""
    if engine == "vllm":  # vLLM schedules its own batches; its version is part of the key (not installed: None)
        return {"class": "VLLMScorer", "vllm": runs.package_versions(("vllm",)).get("vllm")}
    return {"class": "HFScorer", "batch_size": batch_size, "generate_batch_size": GENERATE_BATCH_SIZE}


def load_scorer(spec: str, engine: str, batch_size: int, config: RunConfig | None = None) -> Scorer:
    """A model spec on the chosen engine: `transformers` (HFScorer) or `vllm` (VLLMScorer)."""
    if engine == "vllm":
        from medsft.evaluate.vllm_scorer import VLLMScorer

        return VLLMScorer.from_spec(spec, config=config)
    return HFScorer.from_spec(spec, batch_size=batch_size, config=config)


def finish(results: list[TaskResult], seed: int, run_dir: str | Path | None, overwrite: bool) -> Comparison:
    comparison = compare_results(results, seed)
    if run_dir is not None:
        path = Path(run_dir) / f"compare_{slug(results[0].task)}.json"
        runs.write_json(path, comparison.to_dict(), overwrite, strict=True)
    return comparison


def compare_results(results: Sequence[TaskResult], seed: int = 0) -> Comparison:
    """Accuracy table, paired differences against the first result, and per-subject accuracy."""
    if not results:
        raise ValueError("nothing to compare")
    base = results[0]
    names = [r.model for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must differ to tell results apart, got {names}")
    for result in results[1:]:
        if result.ids != base.ids:
            raise ValueError(f"{result.model} was evaluated on different questions than {base.model}; a paired "
                             "comparison needs the identical question list in the same order")  # fmt: skip
    if get_task(base_task(base.task)).kind == "dialogue":  # a view's result is named e.g. medqa_chat
        table, pairs, breakdown = compare_dialogue(results, seed)
        return Comparison(task=base.task, results=list(results), table=table, pairs=pairs, breakdown=breakdown)
    # the interval recomputed, so result files written before Wilson agree
    table = [
        {"model": r.model, "n": r.n, "acc": r.metrics["acc"], "acc_ci": accuracy(r.outcomes())["acc_ci"]}
        | {key: r.metrics[key] for key in ("unparseable",) if key in r.metrics}
        for r in results
    ]
    pairs = []
    for result in results[1:]:
        diff = paired_bootstrap(base.outcomes(), result.outcomes(), seed=seed)
        test = mcnemar_exact(base.outcomes(), result.outcomes())
        pairs.append({"baseline": base.model, "model": result.model, "diff": diff.value,
                      "diff_ci": [diff.low, diff.high], "mcnemar_p": test.p_value,
                      "only_baseline_correct": test.only_first, "only_model_correct": test.only_second})  # fmt: skip
    return Comparison(task=base.task, results=list(results), table=table, pairs=pairs,
                      breakdown=group_breakdown(results, ("n", "acc", "acc_ci")),
                      baselines=baselines(results, seed))  # fmt: skip
