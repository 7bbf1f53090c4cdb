"""RunConfig, every run knob: defaults < recipe < environment < overrides, validated once (docs/configuration.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EMBEDDED_MODEL = "embedded"
ENV_PREFIX = "MEDSFT_"
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"

# Allowed values live next to the config so the error messages and the docs cannot drift apart.
ALL_LINEAR = "all-linear"
LORA_TARGETS = {"attention": ["q_proj", "k_proj", "v_proj", "o_proj"]}
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("f16", "q8_0", "q5_k_m", "q4_k_m")
EVAL_MODES = ("loglikelihood", "generate")
EVAL_VIEWS = ("raw", "chat")
EVAL_ENGINES = ("transformers", "vllm")
# How a source's rows become assistant turns (docs/configuration.md#fields)
DATA_STYLES = {"pubmedqa": ("reasoning", "answer")}
# = medsft.tasks.TASKS (tests/test_tasks.py); the suite `suite` is the Open Medical-LLM Leaderboard's nine.
LEADERBOARD_TASKS = (
    "medqa", "pubmedqa", "medmcqa", "mmlu_anatomy", "mmlu_clinical_knowledge", "mmlu_college_biology",
    "mmlu_college_medicine", "mmlu_medical_genetics", "mmlu_professional_medicine",
)  # fmt: skip
EVAL_TASKS = (*LEADERBOARD_TASKS, "synthetic", "synthetic_ood", "dialogue")
EVAL_SUITES = {"suite": LEADERBOARD_TASKS, "mmlu": tuple(t for t in LEADERBOARD_TASKS if t.startswith("mmlu_"))}
DATA_SOURCES = ("medical_o1", "medqa", "pubmedqa", "instructions", "messages", "synthetic")


class ConfigError(ValueError):
    """A config value is wrong; the message names the field, its source and what is allowed."""


@dataclass
class DataSource:
    """One training source in the dataset mix (its keys: docs/configuration.md#fields)."""

    name: str
    path: str | None = None
    subset: str | None = None
    split: str = "train"
    count: int | None = None
    weight: float | None = None
    style: str | None = None


@dataclass
class RunConfig:
    """Every knob of one run. Field names are the papermill parameter names and the YAML keys."""

    # Model
    model: str = EMBEDDED_MODEL
    backend: str = "auto"
    chat_template: str | None = None
    max_seq_length: int = 512
    load_in_4bit: bool = False
    dtype: str = "auto"

    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target: str = "all-linear"  # as in peft, a group in LORA_TARGETS, or module names (docs/configuration.md)

    # Optimisation
    optimizer: str = "adamw_torch"
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    num_epochs: float = 1.0
    max_steps: int = -1
    seed: int = 3407

    # Loss, validation, checkpoints
    train_on_reasoning: bool = True
    eval_every_steps: int = 20
    save_every_steps: int = 20
    select_checkpoint_by: str = "eval_loss"  # what picks the adapter among the checkpoints (docs/training.md)
    early_stopping_patience: int = 0
    early_stopping_threshold: float = 0.0
    logging_steps: int = 1
    resume: bool = False
    dry_run: bool = False

    # Data
    datasets: list[DataSource] = field(default_factory=lambda: [DataSource(name="synthetic", count=256)])
    train_rows: int | None = None
    validation_fraction: float = 0.1
    validation_fold: int | None = None  # K-fold cross-validation (validation_fraction 1/K); None: a random share
    data_seed: int = 0
    decontaminate: bool = True
    add_disclaimer: bool = False

    # Evaluation
    # Task names or suite names (`suite`: the nine leaderboard tasks), expanded when the config is built.
    eval_tasks: list[str] = field(default_factory=lambda: [*LEADERBOARD_TASKS, "synthetic", "synthetic_ood"])
    eval_limit: int | None = None  # None: the whole test split (MedQA 1,273, PubMedQA 500, ...), as papers report
    eval_generate_limit: int | None = None  # generation is ~100x slower: its own count (docs/configuration.md)
    eval_max_new_tokens: int = 384
    eval_mode: str = "loglikelihood"  # multiple choice by lm-eval's log-likelihoods or a reply; synthetic generates
    # The views of multiple-choice prompts and the chat view's items: chat prompts are ~1.5x longer (docs/evaluation.md)
    eval_views: list[str] = field(default_factory=lambda: list(EVAL_VIEWS))
    eval_chat_limit: int | None = 200
    eval_engine: str = "transformers"  # or "vllm" (VLLMScorer, GPU only: `pip install -e '.[vllm]'`)

    # Export
    export_quantizations: list[str] = field(default_factory=lambda: ["q8_0", "q4_k_m"])
    export_check_items: int | None = 100  # items per task of a GGUF's accuracy check (docs/configuration.md)
    export_min_token_agreement: float = 0.25  # of 16-bit's first 16 greedy tokens: Q8_0 kept 6, broken Q4_K_M 0

    # Where results go
    output_dir: str = "outputs"
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def lora_target_modules(self) -> list[str] | str:
        """peft's `target_modules`: "all-linear" as peft reads it, or the module names."""
        if self.lora_target == ALL_LINEAR:
            return ALL_LINEAR
        if self.lora_target in LORA_TARGETS:
            return list(LORA_TARGETS[self.lora_target])
        return [name.strip() for name in self.lora_target.split(",") if name.strip()]


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RunConfig))


def load_config(
    recipe: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunConfig:
    """Merge defaults < recipe < MEDSFT_* environment < overrides, then validate once."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if recipe is not None:
        path, recipe_values = read_recipe(recipe)
        for key, value in recipe_values.items():
            values[key], sources[key] = value, str(path)
    for key, value in (os.environ if environ is None else environ).items():
        name = key.removeprefix(ENV_PREFIX).lower()
        if key.startswith(ENV_PREFIX) and name in FIELD_NAMES:
            values[name], sources[name] = parse_env_value(value), f"environment {key}"
    for key, value in (overrides or {}).items():
        values[key], sources[key] = value, "overrides"
    return build_config(values, sources)


def build_config(values: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> RunConfig:
    """Turn raw values (from YAML, env or papermill) into a validated RunConfig."""
    sources = sources or {}
    for name in values:
        if name not in FIELD_NAMES:  # suggest the closest valid name, and list all of them
            close = difflib.get_close_matches(name, FIELD_NAMES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            origin = sources.get(name, "arguments")
            raise ConfigError(f"unknown field '{name}' in {origin}{hint}; valid fields: {', '.join(FIELD_NAMES)}")
    hints = typing.get_type_hints(RunConfig)
    kwargs = {name: coerce(name, value, hints[name], sources.get(name, "arguments")) for name, value in values.items()}
    config = RunConfig(**kwargs)
    config.eval_tasks = expand_suites(config.eval_tasks)
    validate(config)
    return config


def expand_suites(tasks: typing.Iterable[str]) -> list[str]:
    """Suite names (`EVAL_SUITES`) replaced by their tasks, in order, without repeats."""
    out: list[str] = []
    for name in tasks:
        out += [task for task in EVAL_SUITES.get(name, (name,)) if task not in out]
    return out


def read_recipe(recipe: str | Path) -> tuple[Path, dict[str, Any]]:
    """A recipe's file (a YAML path, or a name under recipes/ like `gemma3-270m/medical-o1`) and its fields."""
    path = Path(recipe) if Path(recipe).is_file() else RECIPES_DIR / f"{recipe}.yaml"
    if not path.is_file():
        known = sorted(str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in RECIPES_DIR.glob("*/*.yaml"))
        raise ConfigError(f"recipe '{recipe}' not found: not a file and not one of {', '.join(known)}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid UTF-8 YAML ({err})") from err
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of field: value, got {type(data).__name__}")
    return path, data or {}


def parse_env_value(text: str) -> Any:
    """Environment values are strings; read them as YAML scalars/lists so `8`, `true`, `[a, b]` work."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """Check and convert one value against its type hint; raise ConfigError naming the field."""

    def fail(expected: str) -> typing.NoReturn:
        raise ConfigError(f"{name}: expected {expected}, got {value!r} (from {source})")

    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(name, value, inner, source)
    if hint is bool:
        if isinstance(value, int) and value in (0, 1):  # bool is an int
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        fail("true or false")
    if hint in (int, float):
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return hint(value)
        numeric = isinstance(value, int) or (isinstance(value, float) and (hint is float or value.is_integer()))
        if isinstance(value, bool) or not numeric:
            fail("an integer" if hint is int else "a number")
        return hint(value)
    if hint is str:
        return value if isinstance(value, str) else fail("a string")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            fail("a list")
        (item_hint,) = args
        return [coerce(f"{name}[{i}]", item, item_hint, source) for i, item in enumerate(value)]
    if hint is DataSource:
        if isinstance(value, DataSource):
            return value
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict):
            fail("a data source mapping like {name: medqa, count: 100}")
        hints = typing.get_type_hints(DataSource)  # its fields, in order
        unknown = sorted(set(value) - set(hints))
        if unknown:
            raise ConfigError(f"{name}: unknown key '{unknown[0]}' (from {source}); valid keys: {', '.join(hints)}")
        if "name" not in value:
            raise ConfigError(f"{name}: missing 'name' (from {source}); one of {', '.join(DATA_SOURCES)}")
        return DataSource(**{k: coerce(f"{name}.{k}", v, hints[k], source) for k, v in value.items()})
    raise TypeError(f"no coercion for {hint!r}")  # a programming error, not a user error


# The choice fields (for a list field, each item) and what they allow.
CHOICES = {
    "backend": ("auto", "unsloth", "transformers"),
    "dtype": DTYPES,
    "optimizer": ("adamw_torch", "adamw_8bit", "paged_adamw_8bit", "adamw_torch_fused", "sgd", "adafactor"),
    "lr_scheduler": ("cosine", "linear", "constant", "constant_with_warmup"),
    "eval_tasks": EVAL_TASKS,
    "eval_mode": EVAL_MODES,
    "eval_views": EVAL_VIEWS,
    "eval_engine": EVAL_ENGINES,
    "export_quantizations": QUANTIZATIONS,
    "select_checkpoint_by": ("eval_loss", "pubmedqa_accuracy", "medqa_accuracy"),
}


def validate(config: RunConfig) -> None:
    """Range and choice checks that types alone cannot express."""

    def one_of(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
        if value not in allowed:
            raise ConfigError(f"{name}: {value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")

    def positive(name: str, value: float, allow_zero: bool = False) -> None:
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")

    for name, allowed in CHOICES.items():
        value = getattr(config, name)
        for i, item in enumerate(value) if isinstance(value, list) else [(None, value)]:
            one_of(name if i is None else f"{name}[{i}]", item, allowed)
    if "raw" not in config.eval_views:
        raise ConfigError("eval_views: must hold 'raw' (the leaderboard's comparable number); add 'chat' beside it")
    if not config.datasets:
        raise ConfigError("datasets: the mix is empty; add at least one source, e.g. [{name: synthetic}]")
    for i, source in enumerate(config.datasets):
        one_of(f"datasets[{i}].name", source.name, DATA_SOURCES)
        if source.count is not None and source.weight is not None:
            raise ConfigError(f"datasets[{i}]: give count or weight, not both")
        for key in ("count", "weight"):
            if getattr(source, key) is not None:
                positive(f"datasets[{i}].{key}", getattr(source, key))
        if source.style is not None:
            if source.name not in DATA_STYLES:
                raise ConfigError(f"datasets[{i}].style: source '{source.name}' has no styles to choose from")
            one_of(f"datasets[{i}].style", source.style, DATA_STYLES[source.name])
    if not config.lora_target_modules:
        raise ConfigError(
            f"lora_target: {config.lora_target!r} is not allowed; choose one of "
            f"{', '.join([ALL_LINEAR, *LORA_TARGETS])} or a comma-separated list of module names"
        )
    sizes = ("max_seq_length", "lora_r", "lora_alpha", "batch_size", "gradient_accumulation_steps", "logging_steps")
    item_counts = ("eval_limit", "eval_generate_limit", "eval_chat_limit", "export_check_items", "train_rows")
    for name in (*sizes, "learning_rate", "num_epochs", "eval_max_new_tokens", *item_counts):
        if getattr(config, name) is not None:  # None: every item, or every row
            positive(name, getattr(config, name))
    may_be_zero = ("weight_decay", "max_grad_norm", "early_stopping_patience", "early_stopping_threshold")
    for name in (*may_be_zero, "eval_every_steps", "save_every_steps"):
        positive(name, getattr(config, name), allow_zero=True)
    for name in ("lora_dropout", "warmup_ratio", "validation_fraction"):
        if not 0 <= getattr(config, name) < 1:
            raise ConfigError(f"{name}: must be in [0, 1), got {getattr(config, name)}")
    if config.validation_fold is not None:
        folds = round(1 / config.validation_fraction) if config.validation_fraction else 0
        if folds < 2 or abs(folds * config.validation_fraction - 1) > 1e-6:
            raise ConfigError(f"validation_fold: needs validation_fraction = 1/K, got {config.validation_fraction}")
        if not 0 <= config.validation_fold < folds:
            raise ConfigError(f"validation_fold: must be in 0..{folds - 1} (K = {folds}), got {config.validation_fold}")
    if not 0 <= config.export_min_token_agreement <= 1:
        raise ConfigError(f"export_min_token_agreement: must be in [0, 1], got {config.export_min_token_agreement}")
    if config.max_steps == 0 or config.max_steps < -1:
        raise ConfigError(f"max_steps: must be -1 (use num_epochs) or > 0, got {config.max_steps}")
    if config.eval_every_steps and config.save_every_steps and config.save_every_steps % config.eval_every_steps:
        raise ConfigError(
            f"save_every_steps: {config.save_every_steps} must be a multiple of eval_every_steps "
            f"({config.eval_every_steps}), so the best checkpoint by validation loss is on disk"
        )
    selecting_on = selection_task(config.select_checkpoint_by)
    if selecting_on is not None and selecting_on not in {source.name for source in config.datasets}:
        raise ConfigError(
            f"select_checkpoint_by: {config.select_checkpoint_by} scores the validation rows of the "
            f"'{selecting_on}' source, but datasets has none; add it or use eval_loss"
        )
    if config.run_id is not None and (not config.run_id or "/" in config.run_id or config.run_id.startswith(".")):
        raise ConfigError(f"run_id: {config.run_id!r} must be a plain folder name")


def selection_task(select_checkpoint_by: str) -> str | None:
    """`pubmedqa_accuracy` -> `pubmedqa`; `eval_loss` -> None."""
    return None if select_checkpoint_by == "eval_loss" else select_checkpoint_by.removesuffix("_accuracy")
