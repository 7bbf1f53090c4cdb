"""Run folders and manifests: every run writes to its own folder and records how to repeat it.

`outputs/<run-id>/` holds the resolved config, `manifest.json` (package versions, git commit, data hashes,
hardware, per-stage timings) and the stage results. A folder is created exclusively, so a rerun never writes
into another run's folder; resuming an existing run is asked for explicitly (`resume=True`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from medsft.config import RunConfig

PACKAGES = (
    "medsft",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "unsloth",
    "unsloth_zoo",
    "bitsandbytes",
    "llama_cpp_python",
    "papermill",
    "evaluate",
)


def make_run_id(config: RunConfig) -> str:
    """`<UTC time>-<model>-<config hash>`: sortable, readable, and distinct for distinct configs."""
    model = re.sub(r"[^A-Za-z0-9.]+", "-", config.model.rsplit("/", 1)[-1]).strip("-").lower()
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{model}-{digest}"


def claim_run_dir(config: RunConfig) -> Path:
    """The run's folder path, refusing another run's folder unless resuming it (nothing is created yet)."""
    run_dir = Path(config.output_dir) / (config.run_id or make_run_id(config))
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
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not an opened run folder (no config.yaml); use claim_run_dir")
    return run_dir


def open_run_dir(run_dir: Path, config: RunConfig) -> Path:
    """Create the folder (once the run is known to start) and write the resolved config into it."""
    if not run_dir.exists():
        run_dir.mkdir(parents=True, exist_ok=False)
        write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    return run_dir


def check_run_folder(run_dir: Path) -> Path:
    """`run_dir` if it is a folder a run wrote (it holds config.yaml); ValueError with one line otherwise."""
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run folder (give a folder under outputs/ that a run wrote)")
    if not (run_dir / "config.yaml").is_file():
        raise ValueError(f"{run_dir} is not a run folder (no config.yaml); give the folder a training run wrote")
    return run_dir


def write_text_atomic(path: Path, text: str, overwrite: bool = True) -> Path:
    """Write via a temporary file in the same folder, so readers never see half a file.

    With `overwrite=False` the finished file is linked into place, which fails if the name exists (no window
    for a race, unlike checking first and renaming) and raises `FileExistsError` naming the file.
    """
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


def write_json_atomic(path: Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def update_manifest(run_dir: Path, **sections: Any) -> dict[str, Any]:
    """Merge `sections` into `manifest.json` (created with versions, git and hardware on first call)."""
    path = run_dir / "manifest.json"
    manifest = (
        json.loads(path.read_text(encoding="utf-8"))
        if path.is_file()
        else {
            "run_id": run_dir.name,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "packages": package_versions(),
            "git": git_state(),
            "hardware": hardware(),
        }
    )
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(manifest.get(key), dict):
            manifest[key].update(value)
        else:
            manifest[key] = value
    write_json_atomic(path, manifest)
    return manifest


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of `names` (those not installed are left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_state() -> dict[str, Any]:
    """The commit the code ran from and whether tracked code, recipes or notebooks had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "medsft", "recipes", "notebooks"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


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
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
