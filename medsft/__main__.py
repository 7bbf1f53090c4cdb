"""`python -m medsft` / `medsft`: command-line entry points.

medsft smoke [-r RECIPE] [-p key value ...] [-f params.yaml]   load the model and answer one question
medsft config [-r RECIPE] [-p key value ...] [-f params.yaml]  print the resolved config as YAML
medsft train  [-r RECIPE] [-p key value ...] [-f params.yaml]  LoRA SFT into outputs/<run-id>/
"""

from __future__ import annotations

import argparse
import json
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
    overrides: dict[str, Any] = {}
    if args.params_file:
        data = yaml.safe_load(args.params_file.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{args.params_file}: expected a mapping of field: value")
        overrides.update(data)
    for key, value in args.param:
        overrides[key] = parse_env_value(value)
    return load_config(args.recipe, overrides)


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
    args = parser.parse_args(argv)
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
