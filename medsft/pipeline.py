"""`medsft run`: the stage notebooks in order, through papermill, into one new run folder (docs/pipeline.md)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medsft.config import ConfigError, RunConfig, build_config, load_config
from medsft.run_summary import run_results
from medsft.runs import Run, find_artifact, write_json

log = logging.getLogger("medsft")

REPO_DIR = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_DIR / "notebooks"
STAGE_NAMES = ("data", "train", "evaluate", "export", "chat")
STAGES = tuple((name, f"{i:02}_{name}.ipynb") for i, name in enumerate(STAGE_NAMES, 1))
DEFAULT_RECIPE = "gemma3-270m/pipeline-cpu"
KERNEL = "python3"
# What a run made from another may override: no field that changes the data or adapter it reuses.
REUSE_OVERRIDES = (
    "eval_tasks",
    "eval_limit",
    "eval_generate_limit",
    "eval_max_new_tokens",
    "eval_mode",
    "eval_engine",
    "export_quantizations",
    "export_check_items",
    "export_min_token_agreement",
    "output_dir",
    "run_id",
)


class StageError(RuntimeError):
    """A notebook failed; the message names the stage, the cell and its error, and the partial render."""

    def __init__(self, what: str, notebook: Path, error: Mapping[str, Any]) -> None:
        where = f"{error['where']}: {error['ename']}: {error['evalue']}"
        super().__init__(f"{what} failed in {where}\npartial notebook: {notebook}")


def parse_stages(stages: str | Iterable[str] | None) -> list[str]:
    """Stage names in pipeline order from `data,train` or a list; None means every stage."""
    names = [s.strip() for s in stages.split(",")] if isinstance(stages, str) else list(stages or [])
    unknown = [name for name in names if name not in STAGE_NAMES]
    if unknown:
        raise ConfigError(f"unknown stage '{unknown[0]}'; choose from {', '.join(STAGE_NAMES)}")
    return [name for name in STAGE_NAMES if not names or name in names]


# What a stage opened by hand needs from the stage before it: the data splits, the adapter, the GGUF files.
NEEDS = {"train": "data", "evaluate": "adapter", "export": "adapter", "chat": "gguf"}


def open_notebook_run(
    run_dir: str = "", recipe: str = DEFAULT_RECIPE, params: Mapping[str, Any] | None = None, stage: str = ""
) -> Run:
    """The runner's `run_dir`, or (empty) a fresh run chained to the latest run holding what `stage` needs."""
    if run_dir:
        return Run.open(run_dir)
    if Path.cwd().resolve() == NOTEBOOKS_DIR.resolve():
        # Jupyter starts kernels in the notebook's folder; runs belong in outputs/, where .gitignore keeps weights
        os.chdir(REPO_DIR)
        log.info("working directory: %s", REPO_DIR)
    config = load_config(recipe or None, dict(params or {}))
    earlier = latest_run_with(config, NEEDS[stage]) if stage in NEEDS else None
    if earlier is not None:
        log.info("starting from %s, the latest run of this config with its %s", earlier, NEEDS[stage])
    return Run.create(config, from_run=earlier, status="interactive", recipe=recipe or None)


def latest_run_with(config: RunConfig, artifact: str) -> Path | None:
    """The newest run under `config.output_dir` holding `artifact` whose config is `config` but for REUSE_OVERRIDES."""

    def shaping(values: Mapping[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in values.items() if key not in REUSE_OVERRIDES}

    wanted = shaping(config.to_dict())
    folders = [path.parent for path in Path(config.output_dir).glob("*/config.yaml")]  # none if no such folder
    for folder in sorted(folders, key=lambda path: (path / "config.yaml").stat().st_mtime, reverse=True):
        if find_artifact(folder, artifact) is None:
            continue
        try:
            values = Run.open(folder).config.to_dict()
        except (ConfigError, OSError, ValueError):  # a run of an older medsft, or a hand-edited config: not this one
            continue
        if shaping(values) == wanted:
            return folder
    return None


def config_from_run(from_run: str | Path, overrides: Mapping[str, Any]) -> RunConfig:
    """An earlier run's config with the few overrides that keep its artifacts valid (REUSE_OVERRIDES)."""
    changed = sorted(set(overrides) - set(REUSE_OVERRIDES))
    if changed:
        raise ConfigError(
            f"'{changed[0]}' cannot change when reusing {from_run}: its data and adapter were made with the old "
            f"value; start a new run instead. Fields that may change: {', '.join(REUSE_OVERRIDES)}"
        )
    values = {**Run.open(from_run).config.to_dict(), "run_id": None, **overrides}
    return build_config(values)


def ensure_kernel() -> str:
    """`python3`, checked to run this interpreter (a user-level spec would win), else installed into this prefix."""
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
    """The chosen stages' notebooks into a new run folder (one missing is skipped, one failing a `StageError`)."""
    names = parse_stages(stages)
    if "evaluate" in names and config.eval_engine == "vllm":
        from medsft.evaluate.vllm_scorer import INSTALL_HINT, vllm_available

        if not vllm_available():  # before the run folder exists and hours of training start
            raise ConfigError(f"eval_engine: vllm is not installed; {INSTALL_HINT}")
    run = Run.create(config, from_run=from_run, status="running", stages=names)
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
            run.update_manifest(status="failed", error=error, timings={"notebooks": timings})
            raise StageError(f"stage {stage}", run.run_dir / filename, error) from err
        timings[Path(filename).stem] = round(time.perf_counter() - started, 1)
        run.update_manifest(timings={"notebooks": timings})
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run.update_manifest(skipped_stages=skipped, status="complete", finished_utc=finished)
    write_json(run.path("results.json"), run_results(run))
    return run.run_dir


def describe_error(err: BaseException) -> dict[str, Any]:
    """ename/evalue and the cell of a notebook error (papermill's), or the exception itself otherwise."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        where = f"cell {err.exec_count}"
        return {"where": where, "cell_index": err.cell_index, "ename": err.ename, "evalue": err.evalue}
    return {"where": "the runner", "ename": type(err).__name__, "evalue": str(err)}
