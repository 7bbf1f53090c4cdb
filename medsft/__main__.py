"""`python -m medsft` / `medsft`: command-line entry points.

medsft smoke [-r RECIPE] [-p key value ...] [-f params.yaml]   load the model and answer one question
medsft config [-r RECIPE] [-p key value ...] [-f params.yaml]  print the resolved config as YAML
medsft train  [-r RECIPE] [-p key value ...] [-f params.yaml]  LoRA SFT into outputs/<run-id>/
medsft run    [-r RECIPE] [-p key value ...] [-f params.yaml] [--stages data,train,...] [--from-run DIR]
              the stage notebooks (papermill) into outputs/<run-id>/; -r defaults to gemma3-270m/pipeline-cpu
medsft sweep  GRID.yaml   the pipeline for every combination of a grid, then notebooks/10_summary.ipynb
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from medsft import DISCLAIMER, __version__
from medsft.config import ConfigError, RunConfig, load_config, parse_env_value

SMOKE_QUESTION = "A 58-year-old man has crushing chest pain radiating to his left arm. What should be done first?"


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


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return load_config(args.recipe, overrides_from_args(args))


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """`-f params.yaml` first, then each `-p key value` (read as YAML), later ones winning."""
    overrides: dict[str, Any] = {}
    if args.params_file:
        data = yaml.safe_load(args.params_file.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{args.params_file}: expected a mapping of field: value")
        overrides.update(data)
    for key, value in args.param:
        overrides[key] = parse_env_value(value)
    return overrides


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stages", default=None, help="comma-separated stages (default: all): data,train,evaluate,export,chat"
    )
    parser.add_argument("--from-run", type=Path, help="start from an earlier run folder, reusing its data and adapter")
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
        if args.from_run:
            if args.recipe:
                raise ConfigError("--from-run takes the earlier run's config; give no recipe (-r) with it")
            config = config_from_run(args.from_run, overrides_from_args(args))
        else:
            args.recipe = args.recipe or DEFAULT_RECIPE
            config = config_from_args(args)
        run_dir = run_pipeline(config, args.stages, from_run=args.from_run, **output)
    except ConfigError as err:
        print(f"medsft: config error: {err}", file=sys.stderr)
        return 2
    except (FileExistsError, FileNotFoundError) as err:
        print(f"medsft: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    except (StageError, SweepError) as err:
        print(f"medsft: {err}", file=sys.stderr)
        return 1
    print(f"run folder: {run_dir}")
    return 0


def smoke(config: RunConfig) -> None:
    """Load the configured model through the chosen backend and greedy-answer one clinical question."""
    from medsft.backend import select_backend
    from medsft.evaluate import HFScorer

    started = time.perf_counter()
    backend = select_backend(config.backend)
    model, tokenizer = backend.load(config)
    loaded = time.perf_counter()
    scorer = HFScorer(model, tokenizer, name=config.model)
    (reply,) = scorer.generate([[{"role": "user", "content": SMOKE_QUESTION}]], max_new_tokens=48)
    done = time.perf_counter()
    print(f"model: {config.model} via {backend.name} ({backend.reason})")
    print(f"load: {loaded - started:.1f} s, generate 48 tokens: {done - loaded:.1f} s")
    print(f"Q: {SMOKE_QUESTION}\nA: {reply.strip()}\n\n{DISCLAIMER}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medsft", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--version", action="version", version=f"medsft {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("smoke", "load the model and answer one question"),
        ("config", "print the resolved config"),
        ("train", "LoRA SFT with response-only loss"),
    ):
        add_config_arguments(commands.add_parser(name, help=help_text))
    run = commands.add_parser("run", help="execute the stage notebooks into outputs/<run-id>/")
    add_config_arguments(run)
    add_run_arguments(run)
    sweep = commands.add_parser("sweep", help="run the pipeline over a grid and summarize")
    sweep.add_argument("grid", type=Path, help="sweep YAML: name, recipe, stages, base, grid")
    add_output_arguments(sweep)
    args = parser.parse_args(argv)
    if args.command in ("run", "sweep"):
        return run_command(args)
    try:
        config = config_from_args(args)
    except ConfigError as err:
        print(f"medsft: config error: {err}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    elif args.command == "smoke":
        smoke(config)
    elif args.command == "train":
        from medsft.data import DataError
        from medsft.labels import LabelError
        from medsft.train import train

        try:
            print(json.dumps(train(config).to_dict(), indent=2))
        except (DataError, LabelError, ConfigError, FileExistsError) as err:  # the user's input, not a bug
            print(f"medsft: {type(err).__name__}: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
