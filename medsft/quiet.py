"""What medsft's output leaves out: a library deprecation warning it cannot fix, and half-drawn progress bars
(papermill saves a widget's first frame, a text bar's every frame: docs/pipeline.md#rendered-notebooks)."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# (category, start of the message) of each warning medsft cannot fix: peft reads `model.is_gradient_checkpointing`
# (PeftModel.__init__), deprecated in transformers 5.2x.
KNOWN_WARNINGS = ((FutureWarning, "`is_gradient_checkpointing` is deprecated"),)

RENDERED = "MEDSFT_RENDERED"  # set (to "1") in the environment of a kernel whose notebook papermill saves
RENDERED_ENVIRONMENT = {
    RENDERED: "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' bars (weights, shards) and hub downloads
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # datasets' map/filter bars (TRL's truncation, masking)
}


def filter_known_warnings() -> None:
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category)


@contextmanager
def rendered_environment() -> Iterator[None]:
    """Within the block, kernels started (papermill's) inherit `RENDERED_ENVIRONMENT`; variables the user set win:
    the Hugging Face libraries' own bars are off, and medsft's long steps keep one text bar."""
    added = {name: value for name, value in RENDERED_ENVIRONMENT.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def use_text_progress_bars() -> None:
    """In a rendered notebook's kernel, `tqdm.auto` draws text instead of a widget (`coalesce_streams` keeps its last
    frame); libraries look `tqdm.auto` up when a bar starts, so replacing the module's names is enough."""
    if os.environ.get(RENDERED) != "1":
        return
    import tqdm.auto
    import tqdm.std

    tqdm.auto.tqdm, tqdm.auto.trange = tqdm.std.tqdm, tqdm.std.trange
