"""Optional upload of a run's adapter, merged checkpoint and GGUF files with its model card; the token comes
from `HF_TOKEN` only, so it never appears in a notebook's parameters, a rendered cell or a log line."""

from __future__ import annotations

import os
from pathlib import Path

from medsft.export.gguf import REJECTED_SUFFIX, ExportError

PARTS = ("adapter", "merged", "gguf")


def push_to_hub(run_dir: str | Path, repo_id: str, parts: tuple[str, ...] = PARTS, private: bool = True) -> str:
    """Upload the chosen parts into sub-folders of one (private by default) model repo; returns its URL."""
    run_dir = Path(run_dir)
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ExportError("push_to_hub needs a Hugging Face token in the HF_TOKEN environment variable")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ExportError(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    missing = [p for p in parts if not (run_dir / p).is_dir()]
    card = run_dir / "model_card.md"
    if missing or not card.is_file():
        raise ExportError(f"{run_dir} lacks {', '.join(missing) or 'model_card.md'}; run the export first")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_file(path_or_fileobj=str(card), path_in_repo="README.md", repo_id=repo_id)
    for part in parts:
        # A file that failed its export check stays local: it is never published next to the good ones.
        api.upload_folder(
            folder_path=str(run_dir / part), path_in_repo=part, repo_id=repo_id, ignore_patterns=[f"*{REJECTED_SUFFIX}"]
        )
    return str(url)
