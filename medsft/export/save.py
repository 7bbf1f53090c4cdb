"""`export_run`: adapter, merged 16-bit, verified GGUF files and the model card, in docs/export.md's steps."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsft.config import RunConfig
from medsft.export.card import base_model_id, card_text
from medsft.export.gguf import LLAMA_CPP_TYPES, ExportError, check_quantizations, partial_name, rejected_name
from medsft.export.llamacpp_toolchain import check_disk, find_toolchain
from medsft.export.sizes import folder_mib, size_row
from medsft.export.verify import end_of_turn_ids, judge, reference_first_tokens, verify_gguf
from medsft.runs import Run, check_run_folder, write_json, write_text_atomic

log = logging.getLogger("medsft")

# Accuracy change allowed against the merged 16-bit model, as a share of questions (issue goals: Q4_K_M within
# 2 points, Q8_0 within 0.5; F16 is held to Q8_0's, Q5_K_M halfway).
ACCURACY_GOALS = {"f16": 0.005, "q8_0": 0.005, "q5_k_m": 0.01, "q4_k_m": 0.02}
QUANT_ACCURACY_TASKS = ("medqa", "synthetic")


@dataclass
class ExportResult:
    run_dir: Path
    adapter_dir: Path
    merged_dir: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    size_table: list[dict[str, Any]] = field(default_factory=list)
    model_card: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # quantizations that missed their check

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class ExportPlan:
    """What an export writes and from what, settled (and checked) before any model loads."""

    run: Run
    quantizations: list[str]
    adapter: Path  # the trained LoRA adapter
    finals: dict[str, Path]  # quantization -> the GGUF's final name
    overwrite: bool = False

    @property
    def adapter_config(self) -> RunConfig:
        """The run's config with the adapter as the model (`from_pretrained` loads its base and puts it on)."""
        return dataclasses.replace(self.run.config, model=str(self.adapter))

    @property
    def merged_dir(self) -> Path:
        return self.run.path("merged")

    @property
    def gguf_dir(self) -> Path:
        return self.run.path("gguf")


def plan_export(run_dir: str | Path, quantizations: list[str] | None = None, config: RunConfig | None = None,
                adapter_dir: str | Path | None = None, overwrite: bool = False) -> ExportPlan:  # fmt: skip
    """The checks that need nothing heavy, so a mistake costs seconds, not a merge."""
    run_dir = Path(run_dir)
    try:
        check_run_folder(run_dir)
    except ValueError as err:
        raise ExportError(str(err)) from None
    # the config given by the caller (a notebook's `run.config`), else the one the folder was created with
    run = Run(config, run_dir) if config else Run.open(run_dir)
    quants = check_quantizations(quantizations or run.config.export_quantizations)
    find_toolchain()
    adapter = Path(adapter_dir) if adapter_dir else run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise ExportError(
            f"no LoRA adapter in {adapter} (adapter_config.json missing); train first or pass adapter_dir"
        )
    stem = f"{base_model_id(run.config.model).rsplit('/', 1)[-1]}-{run_dir.name}"
    finals = {q: run_dir / "gguf" / f"{stem}-{LLAMA_CPP_TYPES[q]}.gguf" for q in quants}
    merged_dir = run_dir / "merged"
    targets = [*finals.values(), *map(rejected_name, finals.values()), run_dir / "export.json"]
    existing = [p for p in targets if p.exists()]
    if (existing or (merged_dir.exists() and any(merged_dir.iterdir()))) and not overwrite:
        raise FileExistsError(
            f"{existing[0] if existing else merged_dir} already exists; pass overwrite=True to replace"
        )
    return ExportPlan(run, quants, adapter, finals, overwrite)


def prepare_folders(plan: ExportPlan, model: Any) -> None:
    """Room on disk for the files, and the adapter copied into the run (when it came from another run)."""
    parameters = sum(p.numel() for p in model.parameters())
    # merged (2 bytes/param) + F16 GGUF (2) + each quantization (at most 2) + 10% slack
    needed = int(parameters * 2 * (2 + len(plan.quantizations)) * 1.1)
    check_disk(plan.run.run_dir, needed, "the merged model and GGUF files")
    if plan.adapter != plan.run.path("adapter"):
        shutil.copytree(plan.adapter, plan.run.path("adapter"), dirs_exist_ok=plan.overwrite)


@contextlib.contextmanager
def gguf_staging(gguf_dir: Path) -> Iterator[Path]:
    """A temporary folder in `gguf/`, removed afterwards with the `<folder>_gguf/` Unsloth 2026.10 writes too."""
    gguf_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=gguf_dir) as tmp:
        try:
            yield Path(tmp)
        finally:
            shutil.rmtree(f"{tmp}_gguf", ignore_errors=True)


def unchecked_files(saved: Any, folder: Path, quants: list[str], finals: dict[str, Path]) -> dict[str, Path]:
    """The files `save_pretrained_gguf` wrote (its list, else a glob), moved to `.partial` names, never final ones."""
    listed = saved.get("gguf_files") if isinstance(saved, dict) else None
    sibling = Path(f"{folder}_gguf")
    written = [Path(p) for p in listed] if listed else [*folder.rglob("*.gguf"), *sibling.rglob("*.gguf")]
    partials: dict[str, Path] = {}
    for quant in quants:
        # exact suffix: a multimodal export also writes <model>.BF16-mmproj.gguf, which is not the f16 file
        suffix = f".{LLAMA_CPP_TYPES[quant]}.gguf".lower()
        match = [p for p in written if p.name.lower().endswith(suffix)]
        if not match:
            for path in partials.values():
                path.unlink(missing_ok=True)
            raise ExportError(f"save_pretrained_gguf wrote no {quant} file (got {[p.name for p in written]})")
        partials[quant] = match[0].replace(partial_name(finals[quant]))
    return partials


def save_ggufs(model: Any, tokenizer: Any, quants: list[str], finals: dict[str, Path]) -> dict[str, Path]:
    """`model.save_pretrained_gguf` into a staging folder, the files moved to their `.partial` names."""
    gguf_dir = next(iter(finals.values())).parent
    with gguf_staging(gguf_dir) as folder:
        saved = model.save_pretrained_gguf(str(folder), tokenizer, quantization_method=quants)
        return unchecked_files(saved, folder, quants, finals)


def check_export(plan: ExportPlan, partials: dict[str, Path],
                 eval_tasks: tuple[str, ...] | list[str] | None = QUANT_ACCURACY_TASKS, eval_limit: int | None = None,
                 strict: bool = False, timings: dict[str, float] | None = None) -> ExportResult:  # fmt: skip
    """Check each GGUF against the 16-bit merge and `settle` it, then write `export.json`, the manifest, the card."""
    run, timings = plan.run, dict(timings or {})
    try:
        tick = time.perf_counter()
        files = check_files(plan, partials, eval_tasks, eval_limit)
        timings["verify_seconds"] = round(time.perf_counter() - tick, 1)
    except BaseException:
        for path in partials.values():
            path.unlink(missing_ok=True)  # nothing unverified is left behind
        raise
    for quant, path in partials.items():
        record_verdict(files[quant], settle(path, plan.finals[quant], files[quant]["passed"], strict))
    merged_row = {"quantization": "merged 16-bit (safetensors)", "file": "merged/",
                  "file_mib": folder_mib(plan.merged_dir), "ram_gib": None, "n_ctx": None}  # fmt: skip
    result = ExportResult(
        run_dir=run.run_dir, adapter_dir=run.path("adapter"), merged_dir=plan.merged_dir, files=list(files.values()),
        size_table=[merged_row, *[files[q]["size"] for q in plan.quantizations]], timings=timings,
        failed=[q for q in plan.quantizations if not files[q]["passed"]],
    )  # fmt: skip
    text = card_text(run.run_dir, result.to_dict(), config=run.values)
    result.model_card = run.write_text("model_card.md", text, overwrite=True)  # export.json was checked first
    for folder in (result.merged_dir, run.path("gguf")):
        write_text_atomic(folder / "README.md", text)
    write_json(run.path("export.json"), result.to_dict(), overwrite=plan.overwrite)
    passed = [Path(f["path"]).name for f in result.files if f["passed"]]
    run.update_manifest(export={"files": passed, "failed": result.failed, **result.timings})
    return result


def export_run(run_dir: str | Path, quantizations: list[str] | None = None, adapter_dir: str | Path | None = None,
               eval_tasks: tuple[str, ...] | list[str] | None = QUANT_ACCURACY_TASKS, eval_limit: int | None = None,
               overwrite: bool = False, strict: bool = False) -> ExportResult:  # fmt: skip
    """Merge, convert, quantize, verify and score into the run (docs/export.md); a failed file is listed in
    `result.failed`, not raised, so the notebook can show why. `eval_tasks=None` skips the accuracy check."""
    from medsft.train.backend import select_backend

    started = time.perf_counter()
    plan = plan_export(run_dir, quantizations, adapter_dir=adapter_dir, overwrite=overwrite)
    backend = select_backend(plan.run.config.backend)
    tick = time.perf_counter()
    model, tokenizer = backend.load(plan.adapter_config)
    prepare_folders(plan, model)
    backend.save_merged(model, tokenizer, plan.merged_dir, overwrite=overwrite)  # model.save_pretrained_merged
    timings = {"merge_seconds": round(time.perf_counter() - tick, 1)}
    tick = time.perf_counter()
    partials = save_ggufs(model, tokenizer, plan.quantizations, plan.finals)
    del model
    gc.collect()
    timings["gguf_seconds"] = round(time.perf_counter() - tick, 1)
    result = check_export(plan, partials, eval_tasks, eval_limit, strict, timings)
    result.timings["total_seconds"] = round(time.perf_counter() - started, 1)
    return result


def settle(partial: Path, final: Path, passed: bool, strict: bool) -> Path | None:
    """The final name if it passed, else `<name>.rejected.gguf` (nothing with `strict`); never both in the folder."""
    rejected = rejected_name(final)
    target = final if passed else None if strict else rejected
    for stale in (final, rejected):
        if stale != target:
            stale.unlink(missing_ok=True)
    if target is None:
        partial.unlink()
        return None
    return partial.replace(target)


def record_verdict(item: dict[str, Any], place: Path | None) -> None:
    """Where the file ended up, in its `export.json` record and its size row."""
    item["status"] = "passed" if item["passed"] else "rejected" if place else "deleted"
    item["path"] = str(place) if place else None
    item["size"]["file"] = place.name if place else "(deleted: failed its check)"
    item["size"]["passed"] = item["passed"]
    if not item["passed"]:
        where = f"kept as {place.name}" if place else "deleted (strict)"
        log.warning("%s FAILED its check, %s: %s", item["quantization"], where, "; ".join(item["reasons"]))


def check_files(plan: ExportPlan, partials: dict[str, Path], eval_tasks: tuple[str, ...] | list[str] | None,
                eval_limit: int | None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Each GGUF's checks against the merged 16-bit checkpoint and its verdict (`passed`, `reasons`)."""
    from medsft.evaluate import HFScorer, compare
    from medsft.evaluate.gguf_scorer import LlamaCppScorer
    from medsft.tasks import item_limit, load_items

    # 16-bit whatever the training precision: a 4-bit reference would hide what quantization changed
    config = plan.run.config
    sixteen_bit = dataclasses.replace(config, load_in_4bit=False)
    reference = HFScorer.from_spec(str(plan.merged_dir), name="merged-16bit", config=sixteen_bit)
    stops = end_of_turn_ids(reference.tokenizer, reference.model.generation_config.eos_token_id)
    prompt_ids, first_tokens = reference_first_tokens(reference.model, reference.tokenizer)
    files: dict[str, dict[str, Any]] = {}
    scorers = []
    for quant, path in partials.items():
        scorer = LlamaCppScorer(path, name=f"gguf-{quant}")
        check = verify_gguf(scorer, reference.tokenizer, stops, prompt_ids, first_tokens)
        agreed, compared = check.agreeing_prefix, len(first_tokens)
        log.info("%s: template ok, stops ok, first %d/%d greedy tokens agree with 16-bit", quant, agreed, compared)
        files[quant] = {"quantization": quant, "path": str(path), "verification": check.to_dict(), "accuracy": {}}
        scorers.append(scorer)
    for task in eval_tasks or ():
        limits = [n for n in (config.export_check_items, item_limit(config, task)) if n is not None]
        limit = eval_limit or min(limits, default=None)
        comparison = compare(
            [reference, *scorers], task, items=load_items(task, limit, config.seed), seed=config.seed,
            run_dir=plan.run.path("export"), overwrite=True, max_new_tokens=config.eval_max_new_tokens,
        )  # fmt: skip
        reference_acc = comparison.table[0]["acc"]
        for quant, pair, row in zip(partials, comparison.pairs, comparison.table[1:], strict=True):
            goal = ACCURACY_GOALS[quant]
            files[quant]["accuracy"][task] = {
                "n": row["n"], "acc": row["acc"], "acc_ci": row["acc_ci"], "reference_acc": reference_acc,
                "diff": pair["diff"], "diff_ci": pair["diff_ci"], "mcnemar_p": pair["mcnemar_p"], "goal": goal,
                "within_goal": abs(pair["diff"]) <= goal + 1e-9,
            }  # fmt: skip
    for scorer in scorers:
        scorer.close()
    for quant, path in partials.items():
        files[quant]["size"] = size_row(quant, path)
        verdict = judge(files[quant], config.export_min_token_agreement)
        files[quant].update(passed=verdict.passed, reasons=verdict.reasons)
    return files
