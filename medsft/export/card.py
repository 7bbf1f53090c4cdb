"""The model card (`huggingface_hub.ModelCard`), written only from the run folder's own records (config, manifest,
training, comparison and export results); a number missing from the run is shown as missing, never filled in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsft import DISCLAIMER, __version__
from medsft.evaluate.report import ci_text
from medsft.runs import Run, read_json

INTENDED_USE = (
    "Research on small clinical-reasoning assistants that run offline: studying fine-tuning, evaluation and "
    "quantization of small open models on medical question answering, with no patient data leaving the machine."
)
OUT_OF_SCOPE = (
    "Diagnosis, treatment or triage of real patients; any clinical decision; use as a source of medical "
    "advice for patients or the public; deployment without independent clinical validation and regulatory review."
)
LIMITATIONS = [
    "A small model: it makes factual errors and can state them confidently; its reasoning text may not match "
    "how it reached an answer.",
    "Accuracy below is measured on small samples (see n and the 95% intervals); it does not transfer to "
    "other populations, languages, guidelines or question styles.",
    "Training data may be synthetic or from public benchmarks; neither covers the range of real clinical cases.",
    "Quantized files (GGUF) can answer differently from the 16-bit model; their measured change is listed.",
]


def base_model_id(model_spec: str) -> str:
    from medsft.config import EMBEDDED_MODEL
    from medsft.models import EMBEDDED_BASE_ID

    return EMBEDDED_BASE_ID if model_spec == EMBEDDED_MODEL else model_spec


def fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def removed_text(counts: dict[str, int] | None) -> str:
    """`contaminated 3, near_duplicate 1`, or `none`: the non-zero counts of a removal table."""
    return ", ".join(f"{name} {n}" for name, n in (counts or {}).items() if n) or "none"


def evaluation_rows(run_dir: Path) -> tuple[list[str], list[str]]:
    """Per task: models, the best constant answer, differences to base and to it; and the answer distributions."""
    rows, distributions = [], []
    for path in sorted(run_dir.glob("compare_*.json")):
        data = read_json(path)
        baselines = data.get("baselines") or {}
        for who, counts in baselines.get("distribution", {}).items():
            distributions.append(f"| {data['task']} | {who} | {', '.join(f'{k} {v}' for k, v in counts.items())} |")
        constant = baselines.get("constant")
        if constant:
            low, high = constant["acc_ci"]
            n = data["table"][0]["n"] if data.get("table") else ""
            rows.append(
                f"| {data['task']} | always '{constant['answer']}' (best constant answer) | {n} | "
                f"{fmt(constant['acc'])} | [{fmt(low)}, {fmt(high)}] |"
            )
        for row in data.get("table", []):
            low, high = row.get("acc_ci", [None, None])
            rows.append(
                f"| {data['task']} | {row['model']} | {row['n']} | {fmt(row['acc'])} | [{fmt(low)}, {fmt(high)}] |"
            )
        differences = [(p, p["baseline"], p.get("mcnemar_p")) for p in data.get("pairs", [])]
        differences += [(p, f"always '{constant['answer']}'", None) for p in baselines.get("vs_constant", [])]
        for pair, baseline, mcnemar_p in differences:
            # A dialogue comparison pairs scores, not right/wrong answers, so it has no McNemar test (null).
            interval = ci_text(pair["diff_ci"], "+") + ("" if mcnemar_p is None else f" (McNemar p={mcnemar_p:.3g})")
            rows.append(f"| {data['task']} | {pair['model']} − {baseline} | | {pair['diff']:+.3f} | {interval} |")
    return rows, distributions


def check_text(passed: bool | None) -> str:
    """A file's verdict; records from before fail-closed export have none."""
    return "—" if passed is None else "passed" if passed else "**FAILED**"


def quantization_rows(export: dict[str, Any] | None) -> list[str]:
    rows = []
    for item in (export or {}).get("files", []):
        verification = item.get("verification", {})
        tokens = f"{verification.get('first_tokens_agree', '—')}/{verification.get('first_tokens_compared', '—')}"
        for task, check in item.get("accuracy", {}).items() or {"—": None}.items():
            low, high = (check or {}).get("diff_ci") or [None, None]
            numbers = "| | | | |" if check is None else (
                f"| {check['n']} | {fmt(check['acc'])} | {fmt(check['reference_acc'])} | "
                f"{fmt(check['diff'])} [{fmt(low)}, {fmt(high)}] |"
            )  # fmt: skip
            rows.append(f"| {item['quantization']} | {check_text(item.get('passed'))} | {tokens} | {task} {numbers}")
    return rows


def failure_lines(export: dict[str, Any] | None) -> list[str]:
    """One line per file that failed its check: where it went and why."""
    lines = []
    for item in (export or {}).get("files", []):
        if item.get("passed") is False:
            where = Path(item["path"]).name if item.get("path") else "deleted"
            lines.append(f"- **{item['quantization']} failed its check** ({where}): {'; '.join(item['reasons'])}")
    return ["", "Files that failed their check are not for use:", "", *lines] if lines else []


def card_text(run_dir: Path, export: dict[str, Any] | None = None, config: Mapping[str, Any] | None = None) -> str:
    """The card's markdown (with YAML metadata); `config` (`Run.values`) is read from the folder when not given."""
    from huggingface_hub import ModelCard, ModelCardData

    if config is None:
        config = Run.open(run_dir).values if Run.is_run_folder(run_dir) else {}
    manifest = read_json(run_dir / "manifest.json") or {}
    trained = read_json(run_dir / "train_results.json") or {}
    export = export if export is not None else read_json(run_dir / "export.json")
    base = base_model_id(config.get("model", "unknown"))
    # The data stage's report holds the sources, counts and removals (the manifest keeps only hashes).
    data = read_json(run_dir / "data_report.json") or manifest.get("data", {})
    evaluations, distributions = evaluation_rows(run_dir)
    hardware = manifest.get("hardware", {})
    tags = ["medical", "clinical-reasoning", "lora", "gguf", "medsft", "research-only"]
    metadata = ModelCardData(base_model=base, library_name="peft", pipeline_tag="text-generation", tags=tags)
    lines = [
        f"# {run_dir.name}: {base} fine-tuned for clinical reasoning (research only)",
        "",
        f"> **{DISCLAIMER}**",
        "",
        f"LoRA fine-tune of `{base}` made with medsft {__version__} (run `{run_dir.name}`), with a merged 16-bit "
        "checkpoint and GGUF files for llama.cpp on a laptop with no GPU.",
        "",
        "## Intended use",
        INTENDED_USE,
        "",
        "## Out-of-scope use",
        OUT_OF_SCOPE,
        "",
        "## Training",
        "| setting | value |",
        "| --- | --- |",
        f"| base model | `{base}` |",
        f"| LoRA | r={config.get('lora_r')}, alpha={config.get('lora_alpha')}, dropout={config.get('lora_dropout')}, "
        f"targets={config.get('lora_target')} |",
        f"| loss | response-only (assistant turns), reasoning "
        f"{'included' if config.get('train_on_reasoning') else 'excluded'} |",
        f"| optimizer | {config.get('optimizer')}, lr {config.get('learning_rate')}, {config.get('lr_scheduler')}, "
        f"warmup {config.get('warmup_ratio')} |",
        f"| batch | {config.get('batch_size')} x {config.get('gradient_accumulation_steps')} accumulation, "
        f"max length {config.get('max_seq_length')} |",
        f"| steps | {trained.get('global_step', '—')} (train loss {fmt(trained.get('train_loss'))}) |",
        f"| seed | {config.get('seed')} |",
        f"| hardware | {hardware.get('cpu_count', '?')} CPU cores, {hardware.get('memory_gib', '?')} GiB, "
        f"CUDA: {hardware.get('cuda')} |",
        f"| speed | {fmt(trained.get('tokens_per_second'), 1)} tokens/s, {fmt(trained.get('runtime_seconds'), 0)} s |",
        "",
        "### Data",
        "| source | origin | rows read | removed | train | validation |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| {s.get('name')} | {s.get('origin')} | {s.get('loaded')} | {removed_text(s.get('removed'))} | "
            f"{s.get('train')} | {s.get('validation')} |"
            for s in data.get("sources", [])
        ],
        "",
        f"Removed before training: {removed_text(data.get('removed'))}; rows overlapping an evaluated test set, "
        f"per task: {removed_text(data.get('contamination'))}.",
        "",
        "## Evaluation (base vs tuned, identical questions)",
        "| task | model | n | accuracy | 95% CI |",
        "| --- | --- | --- | --- | --- |",
        *(evaluations or ["| — | not evaluated in this run | | | |"]),
        "",
        "Accuracy is lm-eval 0.4.13's `acc`, zero-shot; `<task>_chat` rows score the same items through the chat "
        "template (lm-eval `--apply_chat_template`). A difference to the best constant answer whose interval "
        "holds 0 means the model has not shown it learned more than the answer prior.",
        "",
        "| task | answers of | distribution |",
        "| --- | --- | --- |",
        *(distributions or ["| — | | |"]),
        "",
        "## Files and quantization",
        "| file | quantization | check | size (MiB) | RAM to chat (GiB, measured) |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {r['file']} | {r['quantization']} | {check_text(r.get('passed'))} | {r['file_mib']} | "
            f"{fmt(r['ram_gib']) + ' (n_ctx ' + str(r['n_ctx']) + ')' if r['ram_gib'] else '—'} |"
            for r in (export or {}).get("size_table", [])
        ],
        "",
        "Each GGUF against the merged 16-bit checkpoint: its first greedy tokens on a fixed prompt, and accuracy "
        "on the same questions. A file fails when too few first tokens agree or it scores below 16-bit by more "
        "than its goal with the interval excluding the goal.",
        "",
        "| quantization | check | first tokens = 16-bit | task | n | GGUF acc | 16-bit acc | difference [95% CI] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *(quantization_rows(export) or ["| — | | | not measured | | | | |"]),
        *failure_lines(export),
        "",
        "## Limitations",
        *[f"- {item}" for item in LIMITATIONS],
        "",
        "## Use offline",
        "```bash",
        "medsft chat --gguf <file>.gguf                   # or: python -m medsft.export.chat --gguf <file>.gguf",
        "medsft serve --gguf <file>.gguf --port 8000      # OpenAI-compatible, on 127.0.0.1 only",
        "```",
        "",
        f"**{DISCLAIMER}**",
        "",
    ]
    return str(ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n" + "\n".join(lines)))
