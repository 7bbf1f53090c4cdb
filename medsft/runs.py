"""Run folders (`outputs/<run-id>/`: config, manifest, stage results) and the one JSON writer (docs/pipeline.md)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from medsft.config import RunConfig, build_config

CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"

# The versions a manifest records (those not installed are left out): the training stack, then optional engines.
TRAINING_STACK = ("medsft", "torch", "transformers", "trl", "peft", "accelerate", "datasets")
PACKAGES = (*TRAINING_STACK, "unsloth", "unsloth_zoo", "bitsandbytes", "llama_cpp_python", "papermill", "vllm")


def make_run_id(config: RunConfig) -> str:
    """`<UTC time>-<model>-<config hash>`: sortable, readable, and distinct for distinct configs."""
    model = re.sub(r"[^A-Za-z0-9.]+", "-", config.model.rsplit("/", 1)[-1]).strip("-").lower()
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{model}-{digest}"


@dataclass
class Run:
    """One run folder, the only code that creates one or reads its config; `values`: config.yaml as written."""

    config: RunConfig
    run_dir: Path
    values: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.values = self.values or self.config.to_dict()

    @classmethod
    def create(cls, config: RunConfig, from_run: str | Path | None = None, **manifest: Any) -> Run:
        """A new folder `<output_dir>/<run-id>/` with config and manifest; `from_run`: `find_artifact`'s fallback."""
        origin = check_run_folder(Path(from_run), FileNotFoundError, "--from-run ") if from_run else None
        for run_dir in candidate_run_dirs(config):
            try:
                return cls.make(run_dir, config, from_run=origin, **manifest)
            except FileExistsError:
                continue
        raise FileExistsError(
            f"run folder {run_dir} already exists and a run never writes into another run's folder; choose "
            f"another run_id, or start a new run from it with --from-run {run_dir}"
        )

    @classmethod
    def make(cls, run_dir: Path, config: RunConfig, from_run: str | Path | None = None, **manifest: Any) -> Run:
        """Create exactly `run_dir` (FileExistsError if it exists: of two runs given one id, one gets it)."""
        run_dir = Path(run_dir)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(exist_ok=False)  # atomic
        run = cls(replace(config, run_id=run_dir.name), run_dir)
        write_text_atomic(run.path(CONFIG_FILE), yaml.safe_dump(run.values, sort_keys=False), overwrite=False)
        if from_run:  # relative to the new folder, so the link holds from any working directory
            manifest["from_run"] = os.path.relpath(Path(from_run).resolve(), run_dir.resolve())
        run.update_manifest(**manifest)
        return run

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        """The run in an existing folder, its config validated again (never re-resolved from recipes or env)."""
        path = Path(run_dir) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder: no {CONFIG_FILE} in it")
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls(build_config(values, {name: str(path) for name in values}), Path(run_dir), values)

    @staticmethod
    def is_run_folder(path: str | Path) -> bool:
        return (Path(path) / CONFIG_FILE).is_file()

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def find_artifact(self, name: str) -> Path | None:
        return find_artifact(self.run_dir, name)

    def manifest(self) -> dict[str, Any]:
        return read_json(self.path(MANIFEST_FILE)) or {}

    def update_manifest(self, **sections: Any) -> dict[str, Any]:
        """Merge `sections` into `manifest.json` (created with versions, git and hardware on first call)."""
        manifest = self.manifest() or {
            "run_id": self.run_dir.name,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "packages": package_versions(),
            "git": git_state(),
            "hardware": hardware(),
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(manifest.get(key), dict):
                manifest[key].update(value)
            else:
                manifest[key] = value
        write_json(self.path(MANIFEST_FILE), manifest, overwrite=True)  # rewritten on purpose by every stage
        return manifest

    def read_json(self, name: str) -> Any | None:
        return read_json(self.path(name))

    def write_text(self, name: str, text: str, overwrite: bool = False) -> Path:
        return write_text_atomic(self.path(name), text, overwrite=overwrite)


def find_artifact(run_dir: str | Path, name: str) -> Path | None:
    """`run_dir/name`, else the same in the run it was started from (`from_run` in its manifest), and so on back."""
    seen: set[Path] = set()
    current: Path | None = Path(run_dir)
    while current is not None and current.resolve() not in seen:
        seen.add(current.resolve())
        if (current / name).exists():
            return current / name
        origin = (read_json(current / MANIFEST_FILE) or {}).get("from_run")
        current = current / origin if origin else None  # stored relative to the run folder
    return None


def candidate_run_dirs(config: RunConfig) -> Iterator[Path]:
    """Its given `run_id` only, or a generated id, then `-2` ... `-99` (the same config started twice in a second)."""
    base_id = config.run_id or make_run_id(config)
    for attempt in range(1, 100 if config.run_id is None else 2):
        yield Path(config.output_dir) / (base_id if attempt == 1 else f"{base_id}-{attempt}")


def claim_run_dir(config: RunConfig) -> Path:
    """The run's folder path by `Run.create`'s clash rule (an existing one only when resuming); nothing is created."""
    for run_dir in candidate_run_dirs(config):
        if not run_dir.exists():
            break
    if run_dir.exists() and not config.resume:
        raise FileExistsError(
            f"run folder {run_dir} already exists; pass resume=True to continue it or choose another run_id"
        )
    return run_dir


def check_no_training(run_dir: Path, config: RunConfig) -> Path:
    """An opened run folder may be trained into once: its training outputs are replaced only when resuming."""
    done = [name for name in ("train_log.jsonl", "adapter", "checkpoints") if (run_dir / name).exists()]
    if done and not config.resume:
        raise FileExistsError(
            f"run folder {run_dir} already holds training outputs ({', '.join(done)}); pass resume=True to continue "
            "it or start a new run"
        )
    if not Run.is_run_folder(run_dir):
        raise FileNotFoundError(f"{run_dir} is not an opened run folder (no config.yaml); use claim_run_dir")
    return run_dir


def open_run_dir(run_dir: Path, config: RunConfig) -> Path:
    """Create the claimed folder once the run is known to start; an existing run folder is left as it is."""
    if not run_dir.exists():
        Run.make(run_dir, config)
    return check_run_folder(run_dir, FileNotFoundError)


def check_run_folder(run_dir: Path, error: type[Exception] = ValueError, what: str = "") -> Path:
    """`run_dir` if it is a folder a run wrote (it holds config.yaml); `error` with one line otherwise."""
    if not run_dir.is_dir():
        raise error(f"{what}{run_dir}: no such run folder (give a folder under outputs/ that a run wrote)")
    if not Run.is_run_folder(run_dir):
        raise error(f"{what}{run_dir} is not a run folder (no config.yaml); give the folder a training run wrote")
    return run_dir


def write_text_atomic(path: Path, text: str, overwrite: bool = True) -> Path:
    """Via a temporary file, so readers never see half a file; `overwrite=False` links it into place (no race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes the file private; run records are meant to be read by anyone
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(
                    f"{path} already exists; pass overwrite=True to replace it, or use another run folder"
                ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: Path, data: Any, overwrite: bool = False, strict: bool = False) -> Path:
    """The one JSON writer of run records (docs/pipeline.md); `strict`: NaN or a non-JSON value is an error."""
    encoding = {"allow_nan": False} if strict else {"default": str}
    text = json.dumps(data, indent=2, ensure_ascii=False, **encoding) + "\n"
    return write_text_atomic(path, text, overwrite=overwrite)


def read_json(path: Path) -> Any | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_json_lines(path: Path) -> list[Any]:
    """A JSON Lines file's values, split on "\\n" only: splitlines() also splits at U+2029 (in PubMedQA's answers)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def git_state() -> dict[str, Any]:
    """The commit the code ran from and whether tracked code, recipes or notebooks had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no", "--", "medsft", "recipes", "notebooks")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status)}


def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def sha256_rows(rows: list[dict[str, Any]]) -> str:
    """Hash of a dataset's rows in order, so a manifest pins exactly what was trained on."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8") + b"\n")
    return digest.hexdigest()
