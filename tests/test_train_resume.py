"""Training survives a kill: the resumed run continues from the last checkpoint to the same end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def train_command(model_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    params = {
        "model": str(model_dir),
        "datasets": "[{name: synthetic, count: 80}]",
        "eval_tasks": "[synthetic]",
        "max_steps": "24",
        "save_every_steps": "4",
        "eval_every_steps": "4",
        "batch_size": "2",
        "output_dir": str(output_dir),
        "run_id": "killed-run",
    }
    command = [sys.executable, "-m", "medsft", "train"]
    for key, value in params.items():
        command += ["-p", key, value]
    return command + list(extra)


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_killed_run_resumes_from_its_last_checkpoint(tiny_gemma_dir: Path, tmp_path: Path):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    run_dir = tmp_path / "killed-run"
    first = subprocess.Popen(
        train_command(tiny_gemma_dir, tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").is_file():
        assert first.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (run_dir / "train_results.json").exists()

    refused = subprocess.run(train_command(tiny_gemma_dir, tmp_path), env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "already exists" in refused.stderr  # never silently reused

    resumed = subprocess.run(
        train_command(tiny_gemma_dir, tmp_path, "-p", "resume", "true"), env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr and "checkpoint-" in resumed.stderr
    result = json.loads((run_dir / "train_results.json").read_text())
    assert result["global_step"] == 24
    steps = [r["step"] for r in read_log(run_dir) if "loss" in r]
    assert steps == list(range(1, 25))  # each step logged once: the killed run's extra lines were dropped
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("dry_run_env", ["1"])
def test_dry_run_does_two_real_steps_on_a_tiny_model(embedded_dir: Path, tmp_path: Path, dry_run_env: str):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MEDSFT_DRY_RUN": dry_run_env}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "medsft",
            "train",
            "-r",
            "gemma3-270m/medical-o1",
            "-p",
            "datasets",
            "[medical_o1]",
            "-p",
            "output_dir",
            str(tmp_path),
            "-p",
            "run_id",
            "dry",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "dry" / "train_results.json").read_text())
    assert result["global_step"] == 2 and result["train_loss"] > 0
    assert "dry run: tiny random model" in done.stderr


def test_early_stopping_ends_a_run_whose_validation_loss_stops_improving(tiny_gemma_dir: Path, tmp_path: Path):
    from medsft.config import build_config
    from medsft.train.steps import train

    config = build_config(
        {
            "model": str(tiny_gemma_dir),
            "datasets": [{"name": "synthetic", "count": 48}],
            "eval_tasks": ["synthetic"],
            "learning_rate": 1e-7,  # far too small to improve validation loss by the threshold
            "max_steps": 40,
            "eval_every_steps": 2,
            "save_every_steps": 2,
            "early_stopping_patience": 2,
            "early_stopping_threshold": 0.01,
            "batch_size": 2,
            "output_dir": str(tmp_path),
        }
    )
    result = train(config)
    # Step 2 sets the best loss; steps 4 and 6 do not beat it by 0.01, so patience 2 stops the run at step 6.
    assert result.global_step == 6
    assert [e["step"] for e in result.eval_losses] == [0, 2, 4, 6]


def test_validation_accuracy_picks_the_checkpoint_and_the_untrained_model_is_only_a_baseline(
    tiny_gemma_dir: Path, tmp_path: Path
):
    from medsft.config import build_config
    from medsft.train.steps import train

    config = build_config(
        {
            "model": str(tiny_gemma_dir),
            "datasets": [{"name": "pubmedqa", "style": "answer", "count": 24}, {"name": "synthetic", "count": 16}],
            "validation_fraction": 0.25,
            "eval_tasks": ["pubmedqa"],
            "select_checkpoint_by": "pubmedqa_accuracy",
            "max_seq_length": 1024,
            "max_steps": 6,
            "eval_every_steps": 2,
            "save_every_steps": 2,
            "batch_size": 2,
            "learning_rate": 5e-3,
            "output_dir": str(tmp_path),
        }
    )
    result = train(config)
    measure = "eval_pubmedqa_accuracy"
    scores = {entry["step"]: entry[measure] for entry in result.validation_accuracy}
    assert sorted(scores) == [0, 2, 4, 6]
    assert all(0.0 <= score <= 1.0 for score in scores.values())
    best = max(scores[step] for step in (2, 4, 6))
    first_best = min(step for step in (2, 4, 6) if scores[step] == best)  # a later tie does not replace it
    assert result.selected_by == "pubmedqa_accuracy"
    assert result.best_checkpoint is not None and result.best_checkpoint.endswith(f"checkpoint-{first_best}")
    logged = [line for line in read_log(Path(result.run_dir)) if measure in line]
    assert [line["step"] for line in logged] == [0, 2, 4, 6]


def test_choosing_the_checkpoint_by_a_benchmark_needs_that_benchmark_in_the_training_data():
    from medsft.config import ConfigError, build_config

    with pytest.raises(ConfigError, match="select_checkpoint_by: pubmedqa_accuracy .* no"):
        build_config({"datasets": [{"name": "synthetic", "count": 8}], "select_checkpoint_by": "pubmedqa_accuracy"})
    with pytest.raises(ConfigError, match="select_checkpoint_by"):
        build_config({"select_checkpoint_by": "rouge"})
