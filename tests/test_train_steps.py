"""The training steps the train notebook calls one by one are `train()` itself, and what each step shows is true."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_config(model_dir: Path, output_dir: Path, run_id: str):
    from medsft.config import build_config

    return build_config(
        {
            "model": str(model_dir),
            "datasets": [{"name": "synthetic", "count": 24}],
            "eval_tasks": ["synthetic"],
            "max_steps": 3,
            "eval_every_steps": 0,
            "save_every_steps": 0,
            "batch_size": 4,
            "output_dir": str(output_dir),
            "run_id": run_id,
        }
    )


def adapter_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def test_the_steps_one_by_one_train_the_same_adapter_as_train(tiny_gemma_dir: Path, tmp_path: Path):
    from medsft import stages
    from medsft.train import steps

    whole = steps.train(tiny_config(tiny_gemma_dir, tmp_path, "whole"))

    training = steps.start(tiny_config(tiny_gemma_dir, tmp_path, "by-step"))
    model, tokenizer = steps.load_model(training)
    assert stages.model_frame(training).loc["dtype", "value"] == "float32"
    train_rows, validation_rows = steps.tokenize_rows(training)
    assert len(train_rows) == whole.train_rows and len(validation_rows) == whole.validation_rows
    model = steps.add_lora(training)
    lora = stages.lora_frame(model)
    assert lora.loc["r", "value"] == "16" and "q_proj" in lora.loc["target_modules", "value"]
    steps.make_trainer(training)
    assert "= 4" in stages.trainer_frame(training).loc["effective batch", "value"]
    by_step = steps.finish(training, steps.fit(training))

    assert by_step.global_step == whole.global_step == 3
    assert by_step.train_loss == whole.train_loss
    first, second = adapter_weights(whole.run_dir), adapter_weights(by_step.run_dir)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_the_decoded_labels_hold_the_reply_and_none_of_the_prompt(gemma_tokenizer):
    from medsft.config import build_config
    from medsft.stages import template_text, trained_text

    messages = [
        {"role": "user", "content": "Is aspirin an NSAID? Answer yes or no."},
        {"role": "assistant", "content": "Answer: yes"},
    ]
    config = build_config({"train_on_reasoning": True})
    rendered = template_text(gemma_tokenizer, messages)
    assert rendered.startswith("<bos><start_of_turn>user\nIs aspirin")
    assert "<start_of_turn>model\nAnswer: yes" in rendered
    trained = trained_text(gemma_tokenizer, messages, config)
    assert "aspirin" not in trained and "<start_of_turn>" not in trained
    assert trained.startswith(" ") and trained.strip() == "Answer: yes<end_of_turn>"


def test_a_run_parameter_reaches_lora_config_through_the_run_with_no_second_resolution(
    tiny_gemma_dir: Path, tmp_path: Path, monkeypatch
):
    import medsft.config
    import medsft.pipeline
    from medsft import stages
    from medsft.config import load_config
    from medsft.runs import Run
    from medsft.train import steps

    # What `medsft run -p lora_r 8` does first: resolve the config once and give it a run folder.
    config = load_config(None, {"lora_r": 8, "model": str(tiny_gemma_dir), "output_dir": str(tmp_path),
                                "datasets": [{"name": "synthetic", "count": 16}], "eval_every_steps": 0})  # fmt: skip

    def resolved_again(*args, **kwargs):
        raise AssertionError("the config was resolved a second time")

    monkeypatch.setattr(medsft.config, "load_config", resolved_again)
    monkeypatch.setattr(medsft.pipeline, "load_config", resolved_again)
    run_dir = Run.create(config).run_dir
    # The notebook's first cell, as papermill runs it (only run_dir injected): the folder's config.yaml, read once.
    run = medsft.pipeline.open_notebook_run(str(run_dir), "gemma3-270m/pipeline-cpu", {})
    assert run.config.lora_r == 8
    training = stages.start_training(run)
    steps.load_model(training)
    steps.tokenize_rows(training)
    model = steps.add_lora(training)
    assert model.peft_config["default"].r == 8
    assert stages.lora_frame(model).loc["r", "value"] == "8"
