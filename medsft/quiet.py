"""What medsft's output leaves out: an unfixable library warning, half-drawn progress bars (docs/pipeline.md)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

RENDERED = "MEDSFT_RENDERED"  # set (to "1") in the environment of a kernel whose notebook papermill saves
RENDERED_ENVIRONMENT = {
    RENDERED: "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' bars (weights, shards) and hub downloads
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # datasets' map/filter bars (TRL's truncation, masking)
}


def filter_known_warnings() -> None:
    # peft reads `model.is_gradient_checkpointing` (PeftModel.__init__), deprecated in transformers 5.2x
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


@contextmanager
def rendered_environment() -> Iterator[None]:
    """Kernels started within the block inherit `RENDERED_ENVIRONMENT`; variables the user set win."""
    added = {name: value for name, value in RENDERED_ENVIRONMENT.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def use_text_progress_bars() -> None:
    """In a rendered notebook's kernel, `tqdm.auto` draws text (libraries look it up when a bar starts)."""
    if os.environ.get(RENDERED) != "1":
        return
    import tqdm.auto
    import tqdm.std

    tqdm.auto.tqdm, tqdm.auto.trange = tqdm.std.tqdm, tqdm.std.trange
