"""`accelerate launch` with two CPU processes (gloo) trains exactly what one process with the same batch trains.

The same 4 conversations make each optimizer step in both runs: one process with batch 4, or two with batch 2.
The trainer's seeded sampler (accelerate's SeedableRandomSampler, `data_seed`) draws the same order in both, and
with two processes each takes alternate batches of 2 from it, so step k sees the same 4 rows either way.

What must then agree, and what each would catch:
- per-step training loss and gradient norm: the loss normalisation (DDP averages gradients, so each process's
  token-summed loss must be scaled by the number of processes; without it both come out halved);
- final LoRA weights: the gradient all-reduce (a process training on its own half-batch moves weights by a large
  fraction of the learning rate per step) and the data order;
- one run folder, each step logged once, one result printed: only the main process writes.

Tolerance: the runs differ only in float summation order (four conversations in one packed row against two plus
two and a gloo all-reduce); measured here, losses agree to 1e-7 relative and weights to 1e-6 absolute. Each Adam
step moves a weight by up to the learning rate (1e-3), so a wrong batch or an unsynchronised gradient shifts
weights by ~1e-4 or more: 2e-5 (lr / 50) sits well between the two.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
ACCELERATE_CONFIG = REPO / "configs" / "accelerate" / "ddp-cpu-2proc.yaml"
LEARNING_RATE = 1e-3
STEPS = 4


def train_args(model_dir: Path, output_dir: Path, batch_size: int) -> list[str]:
    params = {
        "model": str(model_dir),
        "datasets": "[{name: synthetic, count: 40}]",
        "eval_tasks": "[synthetic]",
        "max_steps": str(STEPS),
        "eval_every_steps": str(STEPS),  # evaluated at the start and the end
        "save_every_steps": "0",
        "warmup_ratio": "0",  # the first step already moves the weights
        "learning_rate": str(LEARNING_RATE),
        "batch_size": str(batch_size),
        "output_dir": str(output_dir),
    }
    return ["train"] + [arg for key, value in params.items() for arg in ("-p", key, value)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list[str]) -> subprocess.CompletedProcess:
    # No GPU even where there is one (this is the CPU/gloo case), and idle OpenMP threads must not spin on the
    # cores the other process needs.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def only_run_dir(output_dir: Path) -> Path:
    folders = [path for path in output_dir.iterdir() if not path.name.startswith(".")]
    assert len(folders) == 1, f"expected one run folder, found {folders}"
    return folders[0]


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tiny_gemma_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    out = {name: tmp_path_factory.mktemp(name) for name in ("ddp", "single")}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CONFIG),
              "--main_process_port", str(free_port()), "-m", "medsft"]  # fmt: skip
    ddp = run(launch + train_args(tiny_gemma_dir, out["ddp"], batch_size=2))
    single = run([sys.executable, "-m", "medsft"] + train_args(tiny_gemma_dir, out["single"], batch_size=4))
    return {"ddp": (only_run_dir(out["ddp"]), ddp.stdout), "single": (only_run_dir(out["single"]), single.stdout)}


def test_only_the_main_process_writes(runs):
    run_dir, stdout = runs["ddp"]  # only_run_dir has already checked that one folder was made
    records = [r for r in read_log(run_dir) if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))  # each step once, not once per process
    assert stdout.count('"run_dir"') == 1  # one result printed
    for name in ("config.yaml", "manifest.json", "train_results.json", "loss_curves.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert not [p for p in run_dir.iterdir() if ".partial" in p.name]  # no half-written leftovers


def test_world_size_and_effective_batch_are_recorded(runs):
    expected = {"ddp": (2, 2), "single": (1, 4)}
    for name, (processes, per_device) in expected.items():
        run_dir, _ = runs[name]
        layout = json.loads((run_dir / "manifest.json").read_text())["distributed"]
        assert layout["world_size"] == processes
        assert layout["per_device_batch_size"] == per_device
        assert layout["effective_batch_size"] == 4
        result = json.loads((run_dir / "train_results.json").read_text())
        assert (result["world_size"], result["effective_batch_size"]) == (processes, 4)
    assert json.loads((runs["ddp"][0] / "manifest.json").read_text())["distributed"]["distributed_type"] == "MULTI_CPU"


def test_two_processes_train_what_one_process_with_the_same_batch_trains(runs):
    ddp, single = (read_log(runs[name][0]) for name in ("ddp", "single"))
    for key in ("loss", "grad_norm", "eval_loss"):
        got = [(r["step"], r[key]) for r in ddp if key in r]
        want = [(r["step"], r[key]) for r in single if key in r]
        assert [step for step, _ in got] == [step for step, _ in want] and got, key
        for (step, a), (_, b) in zip(got, want, strict=True):
            assert a == pytest.approx(b, rel=1e-5), f"{key} at step {step}: {a} (2 processes) vs {b} (1 process)"

    weights = [load_file(runs[name][0] / "adapter" / "adapter_model.safetensors") for name in ("ddp", "single")]
    assert weights[0].keys() == weights[1].keys()
    worst = max((weights[0][key] - weights[1][key]).abs().max().item() for key in weights[0])
    assert worst < LEARNING_RATE / 50, f"LoRA weights differ by {worst}"
    assert any(torch.count_nonzero(w) for key, w in weights[1].items() if "lora_B" in key)  # training moved them


def test_a_launch_of_several_processes_trains_with_transformers_not_unsloth(monkeypatch):
    from medsft.train.backend import unsloth_status

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it for each process
    usable, reason = unsloth_status(has_cuda=True)
    assert not usable and "2 processes" in reason
