"""`medsft sweep` (docs/scale-out.md#sweeps): run ids from the values, so a rerun skips complete runs, replaces none."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from medsft import pipeline
from medsft.config import ConfigError, RunConfig, load_config
from medsft.pipeline import StageError, describe_error, display_path, execute, parse_stages, run_pipeline
from medsft.runs import MANIFEST_FILE, read_json, write_json

log = logging.getLogger("medsft")

SUMMARY_NOTEBOOK = "10_summary.ipynb"
SWEEP_KEYS = ("name", "recipe", "stages", "base", "grid")
MAX_ID_LENGTH = 80


class SweepError(RuntimeError):
    """Some runs of a sweep failed or could not start; the message lists them."""


def read_sweep(path: str | Path) -> dict[str, Any]:
    """The sweep file, checked: known keys, a non-empty grid of lists, a mapping of base overrides."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}'; valid keys: {', '.join(SWEEP_KEYS)}")
    grid = spec.get("grid")
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: 'grid' must map config fields to non-empty lists, e.g. {{lora_r: [8, 16]}}")
    if not isinstance(spec.get("base", {}), dict):
        raise ConfigError(f"{path}: 'base' must be a mapping of config overrides")
    return {"name": spec.get("name") or path.stem, "recipe": spec.get("recipe", pipeline.DEFAULT_RECIPE),
            "stages": parse_stages(spec.get("stages")), "base": spec.get("base") or {}, "grid": grid}  # fmt: skip


def combination_id(combination: dict[str, Any]) -> str:
    """A readable, deterministic folder name for one combination (hashed when values are long or nested)."""
    text = "_".join(f"{key}-{json.dumps(value, sort_keys=True)}" for key, value in combination.items())
    name = re.sub(r"[^A-Za-z0-9._-]+", "", text.replace(" ", ""))
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    if len(name) > MAX_ID_LENGTH or name != text:
        name = f"{name[: MAX_ID_LENGTH - 9]}-{digest}"
    return name.strip(".-") or digest


def run_sweep(
    path: str | Path,
    output_dir: str | None = None,
    notebooks_dir: Path | None = None,
    progress: bool = True,
    log_output: bool = False,
) -> Path:
    """Run every combination not yet complete, render the summary into the sweep folder, return the folder."""
    spec = read_sweep(path)
    notebooks_dir = notebooks_dir or pipeline.NOTEBOOKS_DIR
    sweep_dir = Path(output_dir or load_config(spec["recipe"], spec["base"]).output_dir) / spec["name"]
    planned: list[tuple[dict[str, Any], RunConfig]] = []
    for values in itertools.product(*spec["grid"].values()):  # in the file's order, all validated before any run
        combination = dict(zip(spec["grid"], values, strict=True))
        overrides = {**spec["base"], **combination, "output_dir": str(sweep_dir), "run_id": combination_id(combination)}
        planned.append((combination, load_config(spec["recipe"], overrides)))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    runs = [{"run_id": config.run_id, "values": combination} for combination, config in planned]
    write_json(sweep_dir / "sweep.json", {**spec, "runs": runs}, overwrite=True)
    problems = []
    for combination, config in planned:
        run_dir = sweep_dir / str(config.run_id)
        manifest = read_json(run_dir / MANIFEST_FILE) if run_dir.exists() else {}  # no folder: status None
        status = "no manifest" if manifest is None else manifest.get("status")
        if status == "complete":
            log.info("sweep: %s is complete; skipped", run_dir)
            continue
        if status is not None:
            problems.append(f"{run_dir}: left with status '{status}'; remove or rename it to run it again")
            continue
        log.info("sweep: running %s (%s)", config.run_id, combination)
        try:
            run_pipeline(config, spec["stages"], notebooks_dir=notebooks_dir, progress=progress, log_output=log_output)
        except StageError as err:
            problems.append(str(err))
    try:
        parameters = {"sweep_dir": display_path(sweep_dir)}
        execute(notebooks_dir / SUMMARY_NOTEBOOK, sweep_dir / SUMMARY_NOTEBOOK, parameters, progress, log_output)
    except Exception as err:
        raise StageError("the sweep summary", sweep_dir / SUMMARY_NOTEBOOK, describe_error(err)) from err
    if problems:
        raise SweepError(f"{len(problems)} run(s) of {spec['name']} did not complete:\n" + "\n".join(problems))
    return sweep_dir
