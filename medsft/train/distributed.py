"""Training as several processes under `accelerate launch` (DDP, FSDP; docs/scale-out.md): only the main process
writes the run folder. Run directly, none of this talks to torch.distributed."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def launched_processes() -> int:
    """From WORLD_SIZE (torchrun sets it): known before anything is set up, e.g. for Unsloth's import decision."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def state() -> Any:
    """accelerate's process state, with the CPU choice medsft's TrainingArguments make (`use_cpu` without CUDA):
    without it, torchrun's processes on a CPU machine find no device and accelerate falls back to one process."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    return state().is_main_process if launched_processes() > 1 else True


def wait_for_everyone() -> None:
    if launched_processes() > 1:
        state().wait_for_everyone()


def fsdp_requested() -> bool:
    """Whether `accelerate launch` asked for FSDP (the variable the trainer's Accelerator reads later)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def on_main(make: Callable[[], T]) -> T:
    """`make()` on the main process only (a clock-built name), its result or exception (else all wait) sent to all."""
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
    """Raise on every process if `value` differs between them: samplers shard row indices, not rows (scale-out.md)."""
    if launched_processes() == 1:
        return
    from accelerate.utils import gather_object

    values = gather_object([value])
    if len(set(values)) > 1:
        raise RuntimeError(f"processes disagree on {what}: {sorted(set(values))}; every process must build the same")
