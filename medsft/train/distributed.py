"""Training as several processes under `accelerate launch` (DDP, FSDP): every process runs `train()` in full on
the same rows (same config, same seed), the trainer's sampler hands each its share of every batch, and only the
main process (global rank 0) writes the run folder. Run directly there is one process and none of this talks to
torch.distributed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def launched_processes() -> int:
    """How many processes the launcher started (torchrun sets WORLD_SIZE), read from the environment so it can be
    asked before anything is set up (Unsloth's import decision comes before torch.distributed)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def state() -> Any:
    """accelerate's process state, created with the CPU choice that medsft's TrainingArguments make (`use_cpu`
    when there is no CUDA device): without it, processes started by torchrun on a CPU machine find no device and
    accelerate falls back to a single process instead of gloo."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    return state().is_main_process if launched_processes() > 1 else True


def wait_for_everyone() -> None:
    if launched_processes() > 1:
        state().wait_for_everyone()


def fsdp_requested() -> bool:
    """Whether `accelerate launch` asked for FSDP: it sets this variable, and accelerate's Accelerator (which the
    trainer builds later) reads the same one."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def on_main(make: Callable[[], T]) -> T:
    """`make()` on the main process only, its result handed to every process: a name built from the clock cannot
    differ between processes, and an exception is re-raised on every process (else they wait forever)."""
    if launched_processes() == 1:
        return make()
    from accelerate.utils import broadcast_object_list

    message: list[Any] = [None]
    if is_main_process():
        try:
            message = [(True, make())]
        except Exception as err:  # any error: it must reach the other processes to stop them too
            message = [(False, err)]
    broadcast_object_list(message, from_process=0)
    ok, value = message[0]
    if not ok:
        raise value
    return value


def check_same_everywhere(value: str, what: str) -> None:
    """Raise on every process if `value` differs between processes: data-parallel training shards row indices, not
    rows, so a process that built other rows would silently train on data the manifest does not describe."""
    if launched_processes() == 1:
        return
    from accelerate.utils import gather_object

    values = gather_object([value])
    if len(set(values)) > 1:
        raise RuntimeError(f"processes disagree on {what}: {sorted(set(values))}; every process must build the same")
