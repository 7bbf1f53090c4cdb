"""The pipeline's stages in notebook order (data, train, evaluate, export, chat): each notebook's steps and tables."""

from medsft.stages.chat import chat_stage
from medsft.stages.common import load_tokenizer_for
from medsft.stages.data import labelled_html, prepare_data
from medsft.stages.evaluate import (
    accuracy_frame,
    baseline_frame,
    breakdown_frame,
    discipline_frame,
    eval_data_frame,
    eval_models,
    evaluate_stage,
    label_frame,
    leaderboard_frame,
    scored_example,
    show_text_table,
    side_by_side,
)
from medsft.stages.export import accuracy_results, check_frame, size_frame
from medsft.stages.train import (
    arguments_frame,
    evaluations_frame,
    lora_frame,
    model_frame,
    recipe_frame,
    run_data,
    trained_text,
    trainer_frame,
)

__all__ = [
    "accuracy_frame", "accuracy_results", "chat_stage", "check_frame", "size_frame", "breakdown_frame",
    "eval_data_frame", "baseline_frame", "discipline_frame", "leaderboard_frame", "label_frame", "eval_models",
    "evaluate_stage", "labelled_html", "load_tokenizer_for", "prepare_data", "recipe_frame", "scored_example",
    "show_text_table", "side_by_side", "model_frame", "evaluations_frame", "trained_text", "lora_frame",
    "trainer_frame", "arguments_frame", "run_data",
]  # fmt: skip
