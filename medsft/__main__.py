"""`python -m medsft` / `medsft`: command-line entry points.

medsft smoke [-r RECIPE] [-p key value ...] [-f params.yaml]   load the model and answer one question
medsft config [-r RECIPE] [-p key value ...] [-f params.yaml]  print the resolved config as YAML
medsft train  [-r RECIPE] [-p key value ...] [-f params.yaml]  LoRA SFT into outputs/<run-id>/
medsft run    [-r RECIPE] [-p key value ...] [-f params.yaml] [--stages data,train,...] [--from-run DIR]
              the stage notebooks (papermill) into outputs/<run-id>/; -r defaults to gemma3-270m/pipeline-cpu
medsft sweep  GRID.yaml   the pipeline for every combination of a grid, then notebooks/10_summary.ipynb
medsft eval   --model SPEC --task TASK[,TASK..]|suite --out FILE.json [--data FILE] [--split test|dev]
              [--limit N] [--num-fewshot K] [--view raw|chat] [--mode loglikelihood|generate] [--batch-size N]
              [--seed N] [--overwrite]
              one model on one task: per-question predictions, accuracy with n and a 95% interval
medsft export RUN_DIR [--quant q8_0,q4_k_m] [--push REPO_ID] [--strict] [--allow-failed] [--overwrite]
              merged 16-bit + checked GGUF files + model card; exits 1 if a file fails its check
medsft chat   (RUN_DIR | --gguf FILE) [--prompt TEXT]   chat offline with the run's Q8_0 GGUF (or FILE)
medsft serve  (RUN_DIR | --gguf FILE) [--host 127.0.0.1] [--port 8000] [--max-tokens 2048]
              [--default-max-tokens 768] [--time-limit 60] [--queue-wait 120]   OpenAI-compatible local server
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import yaml

from medsft import DISCLAIMER, __version__
from medsft.cli_errors import error_line
from medsft.config import ConfigError, RunConfig, load_config, parse_env_value

SMOKE_QUESTION = "A 58-year-old man has crushing chest pain radiating to his left arm. What should be done first?"


def fail(message: object, code: int = 2) -> int:
    """Report a user's error as `medsft: <message>` and return the exit code (2: a wrong input, 1: a failed run)."""
    error_line(message)
    return code


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-r", "--recipe", help="recipe name under recipes/ or a YAML path")
    parser.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="override one config field (value read as YAML: 8, true, [a, b])",
    )
    parser.add_argument("-f", "--params-file", type=Path, help="YAML file of field overrides")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """`-f params.yaml` first, then each `-p key value` (read as YAML), later ones winning."""
    data = (yaml.safe_load(args.params_file.read_text(encoding="utf-8")) or {}) if args.params_file else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{args.params_file}: expected a mapping of field: value")
    return {**data, **{key: parse_env_value(value) for key, value in args.param}}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--stages", help="comma-separated stages (default: all): data,train,evaluate,export,chat")
    parser.add_argument("--from-run", type=Path, help="start from an earlier run folder, reusing its data and adapter")
    add_output_arguments(parser)


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grid", type=Path, help="sweep YAML: name, recipe, stages, base, grid")
    add_output_arguments(parser)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' cell output to the log")
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")


def run_command(args: argparse.Namespace) -> int:
    """`medsft run` / `medsft sweep`: config errors before any notebook starts (exit 2), a failed stage exits 1."""
    from medsft.pipeline import DEFAULT_RECIPE, StageError, config_from_run, run_pipeline
    from medsft.sweep import SweepError, run_sweep

    logging.basicConfig(level=logging.INFO, format="medsft: %(message)s")
    output = {"progress": not args.no_progress, "log_output": args.log_output}
    try:
        if args.command == "sweep":
            print(f"sweep folder: {run_sweep(args.grid, **output)}")
            return 0
        if args.from_run and args.recipe:
            raise ConfigError("--from-run takes the earlier run's config; give no recipe (-r) with it")
        if args.from_run:
            config = config_from_run(args.from_run, overrides_from_args(args))
        else:
            config = load_config(args.recipe or DEFAULT_RECIPE, overrides_from_args(args))
        run_dir = run_pipeline(config, args.stages, from_run=args.from_run, **output)
    except ConfigError as err:
        return fail(f"config error: {err}")
    except (FileExistsError, FileNotFoundError) as err:
        return fail(f"{type(err).__name__}: {err}")
    except (StageError, SweepError) as err:
        return fail(err, 1)
    print(f"run folder: {run_dir}")
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="embedded, a model or adapter folder, a hub id, or a .gguf file")
    parser.add_argument(
        "--task",
        help="a task (medqa, pubmedqa, medmcqa, mmlu_<subject>, synthetic, synthetic_ood, dialogue), "
        "a comma-separated list, or a suite: 'suite' (the nine leaderboard tasks) or 'mmlu' (its six subjects)",
    )
    parser.add_argument("--data", help="a JSON/JSONL/Parquet file or hub id instead of the carried test split")
    parser.add_argument("--split", help="the split to score (default: the task's own; MedQA also has dev)")
    parser.add_argument("--num-fewshot", default="0", help="k few-shot examples (MMLU's first k dev rows; default 0)")
    parser.add_argument("--view", default="raw", help="raw (default, lm-eval's prompt) or chat (--apply_chat_template)")
    parser.add_argument("--limit", help="score only the first N items")
    parser.add_argument("--mode", default="loglikelihood", help="loglikelihood (default) or generate")
    parser.add_argument("--batch-size", default="8", help="questions per forward pass (default 8)")
    parser.add_argument(
        "--engine", default="transformers", help="transformers (default) or vllm (a CUDA machine with the vllm extra)"
    )
    parser.add_argument("--seed", default=str(RunConfig.seed), help=f"seed (default {RunConfig.seed})")
    parser.add_argument("--max-new-tokens", default=str(RunConfig.eval_max_new_tokens), help="reply length cap")
    parser.add_argument("--out", type=Path, help="the result JSON file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def integer(name: str, text: str | None, minimum: int | None = 1) -> int | None:
    """The option's value as an integer of at least `minimum` (None: any integer); an option not given is None."""
    if text is None:
        return None
    expected = {None: "an integer", 0: "0 or a positive integer", 1: "a positive integer"}[minimum]
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}: expected {expected}, got {text!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected {expected}, got {value}")
    return value


def check_model(spec: str | None, engine: str) -> None:
    """Reject, without loading anything, a model that cannot load and an engine that cannot run it."""
    from medsft.config import EMBEDDED_MODEL, EVAL_ENGINES
    from medsft.evaluate.vllm_scorer import INSTALL_HINT, vllm_available
    from medsft.models import resolve_model

    if not spec:
        raise ValueError("--model is required (embedded, a model folder, a hub id or a .gguf file)")
    if spec.endswith(".gguf"):
        if not Path(spec).expanduser().is_file():
            raise ValueError(f"--model {spec}: GGUF file not found")
    elif spec != EMBEDDED_MODEL:  # the embedded model always resolves (converted on first use)
        try:
            resolve_model(spec)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"--model: {err}") from None
    if engine not in EVAL_ENGINES:
        raise ValueError(f"--engine: unknown engine '{engine}'; choose one of {', '.join(EVAL_ENGINES)}")
    if engine == "vllm" and spec.endswith(".gguf"):
        raise ValueError("--engine vllm: a .gguf file is scored by llama.cpp; give a model or adapter folder")
    if engine == "vllm" and not vllm_available():
        raise ValueError(f"--engine vllm: vLLM is not installed; {INSTALL_HINT}")


def eval_command(args: argparse.Namespace) -> int:
    """`medsft eval`: every input is checked before a model loads; one JSON (`{"tasks": {...}}` for several)."""
    from medsft.data import DataError
    from medsft.evaluate.compare import compare_results, evaluate_one, load_scorer, normalize_mode
    from medsft.evaluate.report import baseline_lines, discipline_rows, discipline_table, lm_eval_table
    from medsft.evaluate.stats import Interval, wilson_interval
    from medsft.runs import write_json
    from medsft.tasks import describe_data, expand_tasks, get_task, load_items
    from medsft.tasks.base import MAX_FEWSHOT

    try:
        if not args.task:
            raise ValueError("--task is required (a task, a comma-separated list, or the suite name 'suite')")
        if args.out is None:
            raise ValueError("--out is required (the result JSON file)")
        if args.out.exists() and not args.overwrite:
            raise ValueError(f"--out {args.out} already exists; pass --overwrite to replace it")
        if args.out.exists() and not args.out.is_file():
            raise ValueError(f"--out {args.out} is not a file")
        try:
            mode = normalize_mode(args.mode)
        except ValueError as err:
            raise ValueError(f"--mode: {err}") from None
        if args.view not in ("raw", "chat"):
            raise ValueError(f"--view: unknown view '{args.view}'; choose raw or chat")
        limit = integer("--limit", args.limit)
        batch_size = integer("--batch-size", args.batch_size)
        max_new_tokens = integer("--max-new-tokens", args.max_new_tokens)
        num_fewshot = integer("--num-fewshot", args.num_fewshot, minimum=0)
        seed = integer("--seed", args.seed, minimum=None)
        tasks = expand_tasks(name.strip() for name in args.task.split(",") if name.strip())
        if args.data is not None and len(tasks) > 1:
            raise ValueError("--data names one file: give one --task with it")
        for task in tasks:
            spec = get_task(task)
            if num_fewshot and spec.multiple_choice and (spec.fewshot is None or num_fewshot > MAX_FEWSHOT):
                raise ValueError(
                    f"--num-fewshot {num_fewshot}: {task} has "
                    + (f"{MAX_FEWSHOT} few-shot rows" if spec.fewshot else "no few-shot split (zero-shot only)")
                )
        items = {task: load_items(task, limit, seed, path=args.data, split=args.split) for task in tasks}
        data = {task: describe_data(task, args.data, args.split, seed, len(items[task])) for task in tasks}
        check_model(args.model, args.engine)
    except DataError as err:
        return fail(f"DataError: {err}")
    except ValueError as err:
        return fail(err)

    logging.basicConfig(level=logging.INFO, format="medsft: %(message)s")
    if args.model.endswith(".gguf"):
        from medsft.evaluate.gguf_scorer import LlamaCppScorer

        scorer = LlamaCppScorer(Path(args.model).expanduser())
    else:
        scorer = load_scorer(args.model, args.engine, batch_size)
    outputs, results = {}, []
    for task in tasks:
        options = {"num_fewshot": num_fewshot, "view": args.view} if get_task(task).multiple_choice else {}
        result = evaluate_one(scorer, task, items[task], mode, seed, max_new_tokens=max_new_tokens, **options)
        results.append(result)
        if result.mode == "dialogue":  # per-item scores in [0, 1]: the result's own bootstrap interval
            interval, method = Interval(result.metrics["acc"], *result.metrics["acc_ci"]), "percentile bootstrap, 95%"
        else:
            interval, method = wilson_interval(result.outcomes()), "Wilson score interval, 95%"
        outputs[task] = {
            "task": result.task,
            "model": result.model,
            "mode": result.mode,
            "n": result.n,
            "acc": result.metrics["acc"],
            "acc_ci": [interval.low, interval.high],
            "ci": method,
            "data": data[task],
            "baselines": compare_results([result], seed).baselines,
            **{k: v for k, v in result.to_dict().items() if k not in ("task", "model", "n", "mode")},
            "model_spec": {"spec": args.model, "scorer": type(scorer).__name__},
        }
        if result.mode != "loglikelihood":
            outputs[task].setdefault("disclaimer", DISCLAIMER)  # the file holds generated text
    summary = outputs[tasks[0]] if len(tasks) == 1 else {"tasks": outputs, "model": results[0].model}
    try:
        write_json(args.out, summary, overwrite=args.overwrite)
    except FileExistsError as err:
        return fail(f"FileExistsError: {err}")
    if any(result.mode != "dialogue" for result in results):
        print(lm_eval_table(results))
    if discipline_rows(results):
        print("\nPer discipline:\n" + discipline_table(results))
    lines = [line for result in results for line in baseline_lines(compare_results([result], seed))]
    if lines:
        print("\nBaselines:\n" + "\n".join(lines))
    for task, result in zip(tasks, results, strict=True):
        low, high = outputs[task]["acc_ci"]
        where = f"seed {seed}" if not get_task(task).multiple_choice else data[task].get("split")
        headline = "key-point hit rate" if result.mode == "dialogue" else "acc"
        rouge = "".join(f", {k} {result.metrics[k]:.3f}" for k in ("rouge1", "rouge2", "rougeL") if k in result.metrics)
        print(f"{result.task} [{where}] {result.model}: {headline} {result.metrics['acc']:.3f} (n={result.n}, "
              f"95% CI {low:.3f}-{high:.3f}){rouge} -> {args.out}")  # fmt: skip
    return 0


EXPORT_HELP = (
    "Merge the run's LoRA adapter, convert and quantize to GGUF with llama.cpp, check every file against the "
    "merged 16-bit model (chat template, stop tokens, first greedy tokens, accuracy on the same questions) and "
    "write the model card. A file that fails its check is kept as <name>.rejected.gguf (deleted with --strict), "
    "marked failed in export.json and the card, and the command exits 1 unless --allow-failed."
)
CHAT_HELP = (
    "Chat offline through llama.cpp with the run's GGUF (Q8_0 unless --quant) or --gguf FILE: the model's own "
    "chat template, the reasoning shown apart from the answer, the research-only disclaimer after every reply."
)
SERVE_HELP = (
    "llama-cpp-python's OpenAI-compatible server (/v1/chat/completions, /v1/completions, /v1/models, /health) on "
    "the run's GGUF or --gguf FILE, bound to 127.0.0.1 unless --host. Every response carries the research-only "
    "disclaimer (X-Medsft-Disclaimer header, and a disclaimer field in JSON bodies); <think> blocks come back "
    "inside the message content. Every request is checked (a bad one is a 4xx naming the field and its allowed "
    "range) and bounded: max_tokens, the time a reply may generate, the time a request may wait for the model."
)

# `medsft serve`'s bounds on one request, each help formatted with its default.
LIMIT_HELP = {
    "--max-tokens": "the largest max_tokens a request may ask for (default {})",
    "--default-max-tokens": "max_tokens for a request that gives none (default {}, or --max-tokens if smaller)",
    "--time-limit": "a reply's generation stops after this long, with finish_reason length and a note (default {:g})",
    "--queue-wait": "a request that cannot start generating within this long gets a 503 (default {:g})",
}


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder with a trained adapter")
    parser.add_argument("--quant", help="comma-separated: f16,q8_0,q5_k_m,q4_k_m (default: the run's config)")
    parser.add_argument("--push", metavar="REPO_ID", help="upload adapter, merged, GGUF and card (needs HF_TOKEN)")
    parser.add_argument("--strict", action="store_true", help="delete a file that fails its check (default: keep "
                        "it as *.rejected.gguf)")  # fmt: skip
    parser.add_argument("--allow-failed", action="store_true", help="exit 0 even if a file failed its check")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export of this run")


def export_command(args: argparse.Namespace) -> int:
    """`medsft export`: input errors exit 2 before any model loads; a file that fails its check exits 1."""
    from medsft.export import ExportError, VerificationError, check_quantizations, export_run, push_to_hub
    from medsft.export.llamacpp_toolchain import ToolchainError
    from medsft.runs import check_run_folder, find_artifact

    try:  # the adapter to export: this run's, or that of the run it was started from
        adapter = find_artifact(check_run_folder(args.run_dir), "adapter")
        if adapter is None or not (adapter / "adapter_config.json").is_file():
            raise ValueError(
                f"{args.run_dir} has no trained adapter (adapter/adapter_config.json); train first: medsft run"
            )
        quants = check_quantizations(args.quant.split(",")) if args.quant else None
        if args.push and not os.environ.get("HF_TOKEN"):
            raise ValueError("--push needs a Hugging Face token in the HF_TOKEN environment variable")
    except ValueError as err:  # ExportError from check_quantizations is a RuntimeError: caught below
        return fail(err)
    except ExportError as err:
        return fail(f"--quant: {err}")
    logging.basicConfig(level=logging.INFO, format="medsft: %(message)s")
    try:
        result = export_run(args.run_dir, quants, adapter_dir=adapter, overwrite=args.overwrite, strict=args.strict)
    except FileExistsError as err:
        return fail(f"{str(err).split(';')[0]}; pass --overwrite to replace the earlier export")
    except (VerificationError, ExportError, ToolchainError) as err:
        return fail(f"export failed: {err}", 1)
    lines = []  # one per GGUF: verdict, where it is, size, first-token agreement, accuracy against 16-bit
    for item in result.files:
        check = item["verification"]
        accuracy = ", ".join(
            f"{task} {acc['acc']:.3f} vs 16-bit {acc['reference_acc']:.3f} (n={acc['n']})"
            for task, acc in item["accuracy"].items()
        )
        where = Path(item["path"]).name if item["path"] else "deleted"
        lines.append(
            f"{item['quantization']:7} {'passed' if item['passed'] else 'FAILED':6}  {where}  "
            f"{item['size']['file_mib']} MiB  first tokens {check['first_tokens_agree']}/"
            f"{check['first_tokens_compared']}" + (f"  {accuracy}" if accuracy else "")
        )
        lines += [f"        why: {reason}" for reason in item["reasons"]]
    print("\n".join(lines))
    print(f"model card: {result.model_card}")
    if result.failed and not args.allow_failed:
        return fail(
            f"{', '.join(result.failed)} failed the export check (see export.json); use a file that passed, "
            "or pass --allow-failed to accept this export",
            1,
        )
    if args.push:
        print(f"uploaded: {push_to_hub(args.run_dir, args.push)}")
    return 0


def add_gguf_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, nargs="?", metavar="RUN_DIR", help="a run folder with an exported GGUF")
    parser.add_argument("--gguf", type=Path, metavar="FILE", help="a GGUF file instead of RUN_DIR")
    parser.add_argument("--quant", default="q8_0", help="which of the run's GGUF files (default q8_0)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context window in tokens (default 4096)")


def add_chat_arguments(chat: argparse.ArgumentParser) -> None:
    add_gguf_arguments(chat)
    chat.add_argument("--prompt", help="ask one question and exit (default: interactive)")
    chat.add_argument("--system", help="a system message")
    chat.add_argument("--max-tokens", type=int, default=768, help="reply length cap (default 768)")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """The address, and the bounds on one request (with one model context, they also bound every other's wait)."""
    from medsft.export.server_checks import Limits

    add_gguf_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    for flag, kind, default, shown in (
        ("--max-tokens", int, Limits.max_tokens, Limits.max_tokens),
        ("--default-max-tokens", int, None, Limits.default_max_tokens),
        ("--time-limit", float, Limits.time_limit_s, Limits.time_limit_s),
        ("--queue-wait", float, Limits.queue_wait_s, Limits.queue_wait_s),
    ):
        metavar = "N" if kind is int else "SECONDS"
        serve.add_argument(flag, type=kind, default=default, metavar=metavar, help=LIMIT_HELP[flag].format(shown))


def chat_command(args: argparse.Namespace) -> int:
    from medsft.export.chat import resolve_gguf, run_chat

    try:
        gguf = resolve_gguf(args.run_dir, args.gguf, args.quant)
    except ValueError as err:
        return fail(err)
    return run_chat(gguf, args.prompt, args.system, args.max_tokens, args.temperature, args.n_ctx)


def serve_command(args: argparse.Namespace) -> int:
    from medsft.export.chat import resolve_gguf
    from medsft.export.server import serve
    from medsft.export.server_checks import Limits

    default_max_tokens = args.default_max_tokens or min(Limits.default_max_tokens, args.max_tokens)
    try:
        limits = Limits(args.max_tokens, default_max_tokens, args.time_limit, args.queue_wait)
        gguf = resolve_gguf(args.run_dir, args.gguf, args.quant)
    except ValueError as err:
        return fail(err)
    return serve(gguf, args.host, args.port, args.n_ctx, limits)


def one_line_error(message: str) -> NoReturn:
    """An argument error as one line `medsft: ...` with exit code 2 (instead of usage plus the error)."""
    sys.exit(fail(message))


def smoke(config: RunConfig) -> None:
    """Load the configured model through the chosen backend and greedy-answer one clinical question."""
    from medsft.evaluate import HFScorer
    from medsft.evaluate.transformers_scorer import GenerationSettings
    from medsft.train.backend import select_backend

    started = time.perf_counter()
    backend = select_backend(config.backend)
    model, tokenizer = backend.load(config)
    loaded = time.perf_counter()
    scorer = HFScorer(model, tokenizer, name=config.model)
    (reply,) = scorer.generate([[{"role": "user", "content": SMOKE_QUESTION}]], GenerationSettings(48))
    done = time.perf_counter()
    print(f"model: {config.model} via {backend.name} ({backend.reason})")
    print(f"load: {loaded - started:.1f} s, generate 48 tokens: {done - loaded:.1f} s")
    print(f"Q: {SMOKE_QUESTION}\nA: {reply.strip()}\n\n{DISCLAIMER}")


def config_command(args: argparse.Namespace) -> int:
    """`medsft config`, `smoke` and `train` on the resolved config; a wrong input exits 2."""
    try:
        config = load_config(args.recipe, overrides_from_args(args))
    except ConfigError as err:
        return fail(f"config error: {err}")
    if args.command == "config":
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    elif args.command == "smoke":
        smoke(config)
    else:
        from medsft.data import DataError
        from medsft.train.distributed import is_main_process
        from medsft.train.labels import LabelError
        from medsft.train.steps import train

        try:
            result = train(config)
        except (DataError, LabelError, ConfigError, FileExistsError) as err:  # the user's input, not a bug
            return fail(f"{type(err).__name__}: {err}")
        if is_main_process():  # under `accelerate launch` every process returns the same result
            print(json.dumps(result.to_dict(), indent=2))
    return 0


# name: (one-line help, what adds its arguments, its handler, argument errors as one line `medsft: ...`)
COMMANDS = {
    "smoke": ("load the model and answer one question", add_config_arguments, config_command, False),
    "config": ("print the resolved config", add_config_arguments, config_command, False),
    "train": ("LoRA SFT with response-only loss", add_config_arguments, config_command, False),
    "run": ("execute the stage notebooks into outputs/<run-id>/", add_run_arguments, run_command, False),
    "sweep": ("run the pipeline over a grid and summarize", add_sweep_arguments, run_command, False),
    "eval": ("evaluate one model on one task into a JSON file", add_eval_arguments, eval_command, True),
    "export": ("merged model + checked GGUF files + model card", add_export_arguments, export_command, True),
    "chat": ("chat offline with a GGUF (the run's Q8_0 by default)", add_chat_arguments, chat_command, True),
    "serve": ("OpenAI-compatible server on a GGUF (127.0.0.1)", add_serve_arguments, serve_command, True),
}
DESCRIPTIONS = {"export": EXPORT_HELP, "chat": CHAT_HELP, "serve": SERVE_HELP}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medsft", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--version", action="version", version=f"medsft {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _, one_line) in COMMANDS.items():
        subparser = commands.add_parser(name, help=help_text, description=DESCRIPTIONS.get(name))
        add_arguments(subparser)
        if one_line:
            subparser.error = one_line_error  # type: ignore[method-assign]
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        (one_line_error if COMMANDS[args.command][3] else parser.error)(f"unrecognized arguments: {' '.join(unknown)}")
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
