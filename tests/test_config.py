from __future__ import annotations

from pathlib import Path

import pytest

from medsft.__main__ import main
from medsft.config import RECIPES_DIR, ConfigError, DataSource, RunConfig, build_config, load_config


def test_defaults_run_the_embedded_model_on_synthetic_cases():
    config = load_config(environ={})
    assert config == RunConfig()
    assert config.model == "embedded"
    assert config.datasets == [DataSource(name="synthetic", count=256)]


@pytest.mark.parametrize("recipe", sorted(RECIPES_DIR.glob("*/*.yaml")), ids=lambda p: p.parent.name + "/" + p.stem)
def test_every_shipped_recipe_validates(recipe: Path):
    config = load_config(recipe, environ={})
    assert config.datasets


def test_recipes_carry_the_seed_hyperparameters():
    llama = load_config("llama3.2-1b/dialogues", environ={})
    assert (llama.lora_r, llama.lora_alpha, llama.num_epochs, llama.lr_scheduler) == (16, 32, 3.0, "cosine")
    assert (llama.warmup_ratio, llama.weight_decay, llama.max_grad_norm, llama.optimizer) == (
        0.03,
        0.01,
        0.3,
        "adamw_8bit",
    )
    assert llama.lora_target_modules == "all-linear"  # peft's meaning; resolved on the model (test_backend)
    e2b = load_config("gemma4-e2b/mixed", environ={})
    assert (e2b.lora_r, e2b.lora_alpha, e2b.lora_dropout, e2b.warmup_ratio) == (16, 16, 0.05, 0.05)
    assert (e2b.batch_size, e2b.gradient_accumulation_steps, e2b.max_seq_length, e2b.num_epochs) == (2, 8, 2048, 1.0)
    assert len(e2b.datasets) == 3
    big = load_config("gemma3-12b/clinical-tasks", environ={})
    assert (big.lora_r, big.lora_alpha, big.max_seq_length, big.num_epochs, big.learning_rate) == (
        32,
        64,
        4096,
        3.0,
        2e-4,
    )
    assert big.lora_target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_environment_overrides_recipe_and_explicit_overrides_win(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lora_r: 4\nlearning_rate: 1.0e-3\nseed: 1\n")
    env = {"MEDSFT_LORA_R": "8", "MEDSFT_SEED": "2", "MEDSFT_DRY_RUN": "1", "UNRELATED": "x"}
    config = load_config(recipe, overrides={"seed": 3}, environ=env)
    assert config.learning_rate == 1e-3  # recipe over default
    assert config.lora_r == 8  # environment over recipe
    assert config.seed == 3  # explicit over environment
    assert config.dry_run is True


def test_unknown_field_names_it_suggests_the_closest_and_lists_valid_ones(tmp_path: Path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("lora_rank: 8\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe, environ={})
    message = str(err.value)
    assert "unknown field 'lora_rank'" in message and str(recipe) in message
    assert "did you mean 'lora_r'" in message and "valid fields:" in message and "\n" not in message


def test_wrong_type_names_field_value_and_source():
    with pytest.raises(ConfigError, match=r"lora_r: expected an integer, got 'big' \(from environment MEDSFT_LORA_R\)"):
        load_config(environ={"MEDSFT_LORA_R": "big"})


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("optimizer", "adam9", "choose one of adamw_torch, adamw_8bit"),
        ("lr_scheduler", "step", "choose one of cosine, linear"),
        ("export_quantizations", ["q3_k"], "export_quantizations[0]: 'q3_k' is not allowed; choose one of f16"),
        ("eval_tasks", ["mmlu_virology"], "eval_tasks[0]: 'mmlu_virology' is not allowed"),
        ("eval_mode", "sampling", "eval_mode: 'sampling' is not allowed; choose one of loglikelihood, generate"),
        ("lora_dropout", 1.5, "lora_dropout: must be in [0, 1)"),
        ("max_steps", 0, "max_steps: must be -1"),
        ("lora_r", 0, "lora_r: must be > 0"),
        ("datasets", [{"name": "medqa", "count": 5, "weight": 0.5}], "give count or weight, not both"),
        ("datasets", [{"name": "pubmed"}], "datasets[0].name: 'pubmed' is not allowed"),
        ("datasets", [{"name": "medqa", "rows": 5}], "datasets[0]: unknown key 'rows'"),
        ("datasets", "medqa", "datasets: expected a list"),
        ("run_id", "../escape", "run_id"),
        ("save_every_steps", 30, "save_every_steps: 30 must be a multiple of eval_every_steps (20)"),
    ],
)
def test_bad_values_are_rejected_with_the_allowed_values(field, value, fragment):
    with pytest.raises(ConfigError) as err:
        build_config({field: value})
    assert fragment in str(err.value)


def test_papermill_style_values_are_coerced():
    config = build_config(
        {
            "lora_r": "8",
            "num_epochs": 2,
            "load_in_4bit": "true",
            "eval_limit": None,
            "datasets": ["medqa", {"name": "synthetic", "count": "10"}],
        }
    )
    assert (config.lora_r, config.num_epochs, config.load_in_4bit, config.eval_limit) == (8, 2.0, True, None)
    assert config.datasets == [DataSource(name="medqa"), DataSource(name="synthetic", count=10)]


def test_unknown_recipe_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="gemma3-270m/medical-o1"):
        load_config("no-such-recipe", environ={})


def test_cli_prints_one_line_error_for_a_bad_field(capsys):
    assert main(["config", "-p", "lora_rnk", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown field 'lora_rnk'" in err


def test_cli_prints_resolved_config(capsys):
    assert main(["config", "-r", "gemma3-12b/clinical-tasks", "-p", "seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "model: unsloth/gemma-3-12b-it" in out and "seed: 7" in out


def test_a_data_style_must_be_one_the_source_offers():
    config = build_config({"datasets": [{"name": "pubmedqa", "style": "answer"}]})
    assert config.datasets[0].style == "answer"
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.style.*reasoning"):
        build_config({"datasets": [{"name": "pubmedqa", "style": "essay"}]})
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.style: source 'medqa' has no styles"):
        build_config({"datasets": [{"name": "medqa", "style": "answer"}]})


@pytest.mark.parametrize(
    ("fraction", "fold", "message"),
    [(0.1, None, None), (0.2, 4, None), (0.2, 5, "must be in 0..4"), (0.3, 0, "1/K"), (0.0, 0, "1/K")],
)
def test_validation_fold_needs_a_fraction_of_one_over_k_and_a_fold_below_k(fraction, fold, message):
    kwargs = {"validation_fraction": fraction, "validation_fold": fold}
    if message is None:
        assert build_config(kwargs).validation_fold == fold
    else:
        with pytest.raises(ConfigError, match=message):
            build_config(kwargs)
