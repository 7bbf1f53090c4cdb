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


def test_the_notebook_cells_train_the_same_adapter_as_train(tiny_gemma_dir: Path, tmp_path: Path):
    """The train notebook's cells, call for call (FastLanguageModel, get_peft_model, SFTTrainer + SFTConfig,
    use_cpu_step, trainer.train), train the very adapter `train()` does."""
    import functools

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from medsft import stages
    from medsft.train import steps
    from medsft.train.callbacks import add_run_callbacks
    from medsft.train.cpu_step import use_cpu_step

    whole = steps.train(tiny_config(tiny_gemma_dir, tmp_path, "whole"))

    config = tiny_config(tiny_gemma_dir, tmp_path, "by-step")
    begun = steps.start(config)
    backend = begun.backend
    FastLanguageModel = backend.fast_language_model(config.model)  # noqa: N806 - Unsloth's name, as in the notebook
    load_arguments = backend.load_arguments(config)
    assert set(load_arguments) >= {"model_name", "max_seq_length", "load_in_4bit", "dtype"}
    model, tokenizer = FastLanguageModel.from_pretrained(**load_arguments)
    tokenizer = backend.get_chat_template(tokenizer, chat_template=config.chat_template)
    assert stages.model_frame(begun, model).loc["dtype", "value"] == "float32"
    rows = steps.training_rows(begun, tokenizer)
    assert len(rows.train) == whole.train_rows and len(rows.validation) == whole.validation_rows
    lora_arguments = backend.lora_arguments(model, config)
    assert "token" not in stages.arguments_frame(load_arguments, config).index  # a secret is never shown
    assert stages.arguments_frame(lora_arguments, config).loc["r", "recipe key"] == "lora_r"
    model = FastLanguageModel.get_peft_model(model, **lora_arguments)
    lora = stages.lora_frame(model)
    assert lora.loc["r", "value"] == "16" and "q_proj" in lora.loc["target_modules", "value"]
    sft_arguments = steps.trainer_arguments(begun, rows)
    trainer = SFTTrainer(
        model=model,
        processing_class=tokenizer,
        args=SFTConfig(**sft_arguments),
        train_dataset=Dataset.from_list(rows.train),
        eval_dataset=Dataset.from_list(rows.validation) if sft_arguments["eval_strategy"] != "no" else None,
        data_collator=functools.partial(steps.pad_examples, pad_id=tokenizer.pad_token_id),
    )
    assert steps.uses_cpu_step(backend)
    trainer = use_cpu_step(trainer)
    trainer = add_run_callbacks(trainer, config, begun.run_dir, *steps.checkpoint_task(begun, rows, sft_arguments))
    assert type(trainer) is SFTTrainer  # TRL's own class: the CPU step is a visible call, not a subclass
    assert "= 4" in stages.trainer_frame(trainer, rows).loc["effective batch", "value"]
    trainer_stats = trainer.train(resume_from_checkpoint=steps.resume_checkpoint(begun, trainer))
    by_step = steps.finish(begun, trainer, tokenizer, rows, trainer_stats)

    assert by_step.global_step == whole.global_step == 3
    assert by_step.train_loss == whole.train_loss
    assert by_step.tokens_per_second and by_step.tokens_per_second > 0
    first, second = adapter_weights(whole.run_dir), adapter_weights(by_step.run_dir)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_the_decoded_labels_hold_the_reply_and_none_of_the_prompt(gemma_tokenizer):
    from medsft.config import build_config
    from medsft.stages import trained_text
    from medsft.templates import render_chat

    messages = [
        {"role": "user", "content": "Is aspirin an NSAID? Answer yes or no."},
        {"role": "assistant", "content": "Answer: yes"},
    ]
    config = build_config({"train_on_reasoning": True})
    rendered = render_chat(gemma_tokenizer, messages)
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
    begun = steps.start(run.config, data=stages.run_data(run), run_dir=run.run_dir)
    model, tokenizer = begun.backend.load(run.config)
    steps.training_rows(begun, tokenizer)
    model = begun.backend.add_lora(model, run.config)
    assert model.peft_config["default"].r == 8
    assert stages.lora_frame(model).loc["r", "value"] == "8"
