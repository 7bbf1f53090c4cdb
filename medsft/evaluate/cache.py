"""Results of models that never change (the base) in `<MEDSFT_CACHE or ~/.cache/medsft>/eval/`, never stale."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsft import runs
from medsft.config import EMBEDDED_MODEL, RunConfig, build_config
from medsft.evaluate.results import TaskResult, slug
from medsft.models import EMBEDDED_NAME, cache_dir

log = logging.getLogger("medsft")

# Bump when scoring or generation code changes what a model's result would be.
SCORER_VERSION = "2"
LOAD_KNOBS = ("backend", "dtype", "load_in_4bit", "chat_template")
PACKAGES = ("medsft", "torch", "transformers", "peft")


def model_identity(spec: str) -> str | None:
    """A stable identity for a model spec (a checkpoint folder by its contents' hash); None: not to be cached."""
    if spec == EMBEDDED_MODEL:
        return f"embedded:{EMBEDDED_NAME}"
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").is_file() or not (path / "config.json").is_file():
            return None  # a run's own adapter (or not a checkpoint): its scores are what the run measures
        return f"folder:{folder_hash(path)}"
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return f"hub:{spec}"
    return None


def folder_hash(folder: Path) -> str:
    """sha256 over every file's relative path and contents (a 1 GB checkpoint takes a few seconds)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def item_payload(item: Any) -> Any:
    """An item as plain data: a synthetic case as its training example, a dataclass as its fields."""
    if hasattr(item, "to_example"):
        return item.to_example()
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    return item


@dataclass(frozen=True)
class ResultCache:
    """Cached results of one model with one scorer configuration; `key(task, items)` names one result."""

    identity: str
    settings: dict[str, Any]
    root: Path

    def key(self, task: str, items: Sequence[Any]) -> str:
        data = json.dumps([item_payload(i) for i in items], sort_keys=True, ensure_ascii=False, default=str)
        parts = {"identity": self.identity, "task": task, "data": hashlib.sha256(data.encode()).hexdigest(),
                 **self.settings}  # fmt: skip
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def path(self, task: str, key: str) -> Path:
        name = slug(self.identity.split(":", 1)[1] if self.identity.startswith(("embedded:", "hub:")) else "folder")
        return self.root / f"{slug(task)}_{name}_{key[:24]}.json"

    def load(self, task: str, items: Sequence[Any]) -> TaskResult | None:
        """The cached result for these exact items and settings, marked as cached; None on a miss."""
        key = self.key(task, items)
        path = self.path(task, key)
        started = time.perf_counter()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        cache = data.pop("cache", {})
        if cache.get("key") != key:
            return None
        result = TaskResult(**data)
        result.settings = {**result.settings, "cached": True, "cached_from": str(path), "cache_key": cache["key"],
                           "seconds_when_computed": result.settings.get("seconds"),
                           "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
        log.info("%s on %s: cached result from %s", result.model, task, path)
        return result

    def store(self, task: str, items: Sequence[Any], result: TaskResult) -> Path:
        key = self.key(task, items)
        data = {**result.to_dict(), "cache": {"key": key, "identity": self.identity, "settings": self.settings}}
        return runs.write_json(self.path(task, key), data, overwrite=True, strict=True)


def result_cache(model: Any, scorer_settings: Mapping[str, Any], mode: str, seed: int,
                 config: RunConfig | None = None, generation: Mapping[str, Any] | None = None,
                 root: Path | None = None) -> ResultCache | None:  # fmt: skip
    """The cache for a model spec evaluated with these settings, or None when the model must not be cached."""
    identity = model_identity(model) if isinstance(model, str) else None
    if identity is None:
        return None
    import torch

    run = config if config is not None else build_config({})
    installed = runs.package_versions(PACKAGES)  # None where not installed: installing one changes the key
    settings = {
        "mode": mode, "seed": seed, "generation": dict(sorted((generation or {}).items())),
        "scorer": {**scorer_settings, "version": SCORER_VERSION}, "load": {k: getattr(run, k) for k in LOAD_KNOBS},
        "packages": {name: installed.get(name) for name in PACKAGES}, "cuda": torch.cuda.is_available(),
    }  # fmt: skip
    return ResultCache(identity, settings, root or cache_dir() / "eval")
