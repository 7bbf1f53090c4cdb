"""`medsft run`: the stage notebooks in order, through papermill, for one resolved config.

Config flows one way. The runner resolves the `RunConfig` once (a bad name or type is a `ConfigError` before
any notebook starts), creates `outputs/<run-id>/` with `config.yaml` and `manifest.json`, and executes each
stage's notebook into that folder with a single parameter, `run_dir`; a notebook reads its config from there
(`open_notebook_run`). Opened by hand in Jupyter or Colab with `run_dir = ""`, a notebook resolves its own
`recipe` + `params` defaults and starts a fresh run folder instead.

A run never writes into another run's folder. To reuse an earlier run's artifacts (its data, adapter, ...),
start a new run from it: `medsft run --from-run outputs/<id> --stages evaluate`; `find_artifact` looks in the
run's folder first, then in the run it came from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medsft.config import ConfigError, RunConfig, build_config, load_config
from medsft.runs import make_run_id, update_manifest, write_json_atomic, write_text_atomic

log = logging.getLogger("medsft")

REPO_DIR = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_DIR / "notebooks"
STAGES = (
    ("data", "01_data.ipynb"),
    ("train", "02_train.ipynb"),
    ("evaluate", "03_evaluate.ipynb"),
    ("export", "04_export.ipynb"),
    ("chat", "05_chat.ipynb"),
)
DEFAULT_RECIPE = "gemma3-270m/pipeline-cpu"
KERNEL = "python3"
# A run made from another keeps its config: only fields that do not change what the earlier stages produced
# may be overridden, so the reused data and adapter still match the config written beside them.
REUSE_OVERRIDES = (
    "eval_tasks",
    "eval_limit",
    "eval_generate_limit",
    "eval_max_new_tokens",
    "eval_mode",
    "export_quantizations",
    "export_check_items",
    "export_min_token_agreement",
    "output_dir",
    "run_id",
)


class StageError(RuntimeError):
    """A stage's notebook failed; the message names the stage, the cell and its error, and the partial render."""


@dataclass
class NotebookRun:
    """What a stage notebook works with: the run's resolved config and its folder."""

    config: RunConfig
    run_dir: Path


def parse_stages(stages: str | Iterable[str] | None) -> list[str]:
    """Stage names in pipeline order from `data,train` or a list; None means every stage."""
    names = [s.strip() for s in stages.split(",")] if isinstance(stages, str) else list(stages or [])
    valid = [name for name, _ in STAGES]
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ConfigError(f"unknown stage '{unknown[0]}'; choose from {', '.join(valid)}")
    return [name for name in valid if name in names] if names else valid


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The config a run folder was created with (validated again, never re-resolved from recipes or env)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: no config.yaml in it")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return build_config(values, {name: str(path) for name in values})


def create_run_dir(config: RunConfig, **manifest: Any) -> NotebookRun:
    """Create `<output_dir>/<run-id>/` exclusively, write the config (with its run id) and the manifest.

    A given `run_id` that exists is an error; a generated one (time + config hash) gets a `-2`, `-3` ... suffix
    when the same config started twice in one second.
    """
    base_id = config.run_id or make_run_id(config)
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 100 if config.run_id is None else 2):
        run_id = base_id if attempt == 1 else f"{base_id}-{attempt}"
        run_dir = Path(config.output_dir) / run_id
        try:
            run_dir.mkdir(exist_ok=False)  # atomic: of two runs given the same id, exactly one gets the folder
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(
            f"run folder {run_dir} already exists and a run never writes into another run's folder; choose "
            f"another run_id, or start a new run from it with --from-run {run_dir}"
        )
    config = dataclasses.replace(config, run_id=run_id)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    update_manifest(run_dir, **manifest)
    return NotebookRun(config, run_dir)


def open_notebook_run(
    run_dir: str = "", recipe: str = DEFAULT_RECIPE, params: Mapping[str, Any] | None = None
) -> NotebookRun:
    """A notebook's config and folder: the runner's `run_dir`, or (empty) a fresh run from recipe + params."""
    if run_dir:
        return NotebookRun(read_run_config(run_dir), Path(run_dir))
    if Path.cwd().resolve() == NOTEBOOKS_DIR.resolve():
        # Jupyter starts kernels in the notebook's folder; runs belong in the repository's outputs/, as with
        # `medsft run`, where .gitignore keeps weights out of git.
        os.chdir(REPO_DIR)
        log.info("working directory: %s", REPO_DIR)
    config = load_config(recipe or None, dict(params or {}))
    return create_run_dir(config, status="interactive", recipe=recipe or None)


def config_from_run(from_run: str | Path, overrides: Mapping[str, Any]) -> RunConfig:
    """An earlier run's config with the few overrides that keep its artifacts valid (REUSE_OVERRIDES)."""
    changed = sorted(set(overrides) - set(REUSE_OVERRIDES))
    if changed:
        raise ConfigError(
            f"'{changed[0]}' cannot change when reusing {from_run}: its data and adapter were made with the old "
            f"value; start a new run instead. Fields that may change: {', '.join(REUSE_OVERRIDES)}"
        )
    values = {**read_run_config(from_run).to_dict(), "run_id": None, **overrides}
    return build_config(values)


def find_artifact(run_dir: str | Path, name: str) -> Path | None:
    """`run_dir/name`, else the same in the run it was started from (`--from-run`), and so on back."""
    seen: set[Path] = set()
    current: Path | None = Path(run_dir)
    while current is not None and current.resolve() not in seen:
        seen.add(current.resolve())
        if (current / name).exists():
            return current / name
        manifest = current / "manifest.json"
        origin = json.loads(manifest.read_text(encoding="utf-8")).get("from_run") if manifest.is_file() else None
        current = current / origin if origin else None  # stored relative to the run folder
    return None


def ensure_kernel() -> str:
    """The kernel name papermill should use, checked to start this interpreter (the venv), not another Python.

    jupyter_client launches a spec whose argv[0] is `python` with `sys.executable`; a user-level `python3`
    spec pointing at another Python would otherwise win, so in that case one is installed into this prefix.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def usable() -> bool:
        try:
            argv0 = KernelSpecManager().get_kernel_spec(KERNEL).argv[0]
        except NoSuchKernel:
            return False
        plain = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
        return argv0 in plain or Path(argv0).resolve() == Path(sys.executable).resolve()

    if not usable():
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL, prefix=sys.prefix)
        os.environ["JUPYTER_PREFER_ENV_PATH"] = "1"  # this prefix's spec before any user-level one
        if not usable():
            raise RuntimeError(f"no '{KERNEL}' Jupyter kernel runs {sys.executable}; run `jupyter kernelspec list`")
    return KERNEL


def execute(notebook: Path, output: Path, parameters: Mapping[str, Any], progress: bool, log_output: bool) -> None:
    """Run one notebook with papermill; the render is saved after every cell, so a failure leaves it partial."""
    import papermill

    from medsft.quiet import rendered_environment

    with rendered_environment():  # no half-drawn progress bars in the saved notebook (medsft.quiet)
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=dict(parameters),
            kernel_name=ensure_kernel(),
            progress_bar=progress,
            log_output=log_output,
            request_save_on_cell_execute=True,
            coalesce_streams=True,  # one stream output per cell; a progress bar's `\r` frames reduced to the last
        )


def display_path(path: Path) -> str:
    """Relative to the working directory when inside it, so rendered notebooks carry no home-folder paths."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def run_pipeline(
    config: RunConfig,
    stages: str | Iterable[str] | None = None,
    from_run: str | Path | None = None,
    notebooks_dir: Path | None = None,
    progress: bool = True,
    log_output: bool = False,
) -> Path:
    """Create the run folder and execute the chosen stages' notebooks into it; returns the folder.

    A stage whose notebook does not exist yet is skipped with a warning. A failing notebook stops the run:
    the manifest says `status: failed` with the cell's error, the partial render stays, and `StageError` is
    raised. On success the manifest says `status: complete` and `results.json` holds the headline numbers.
    """
    from medsft.report import run_results

    names = parse_stages(stages)
    if from_run and not (Path(from_run) / "config.yaml").is_file():
        raise FileNotFoundError(f"--from-run {from_run}: not a run folder (no config.yaml)")
    run = create_run_dir(config, status="running", stages=names)
    if from_run:  # relative to the new folder, so the link holds from any working directory
        update_manifest(run.run_dir, from_run=os.path.relpath(Path(from_run).resolve(), run.run_dir.resolve()))
    timings: dict[str, float] = {}
    skipped = []
    for stage, filename in STAGES:
        if stage not in names:
            continue
        source = (notebooks_dir or NOTEBOOKS_DIR) / filename
        if not source.is_file():
            log.warning("stage %s: %s does not exist yet; skipped", stage, source)
            skipped.append(stage)
            continue
        log.info("stage %s: %s -> %s", stage, filename, run.run_dir / filename)
        started = time.perf_counter()
        try:
            execute(source, run.run_dir / filename, {"run_dir": display_path(run.run_dir)}, progress, log_output)
        except Exception as err:
            timings[Path(filename).stem] = round(time.perf_counter() - started, 1)
            error = {"stage": stage, "notebook": str(run.run_dir / filename), **describe_error(err)}
            update_manifest(run.run_dir, status="failed", error=error, timings={"notebooks": timings})
            raise StageError(
                f"stage {stage} failed in {error['where']}: {error['ename']}: {error['evalue']}\n"
                f"partial notebook: {run.run_dir / filename}"
            ) from err
        timings[Path(filename).stem] = round(time.perf_counter() - started, 1)
        update_manifest(run.run_dir, timings={"notebooks": timings})
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    update_manifest(run.run_dir, skipped_stages=skipped, status="complete", finished_utc=finished)
    write_json_atomic(run.run_dir / "results.json", run_results(run.run_dir))
    return run.run_dir


def describe_error(err: BaseException) -> dict[str, Any]:
    """ename/evalue and the cell of a notebook error (papermill's), or the exception itself otherwise."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        return {
            "where": f"cell {err.exec_count}",
            "cell_index": err.cell_index,
            "ename": err.ename,
            "evalue": err.evalue,
        }
    return {"where": "the runner", "ename": type(err).__name__, "evalue": str(err)}
