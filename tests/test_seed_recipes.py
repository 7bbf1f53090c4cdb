"""Every seed recipe through all five notebooks, loading its model and data by hub id, as a Colab user runs it.

The hub is local (`tests/local_hub.py`): tiny random-weight models in the hub cache under the exact ids the
recipes name, each with its family's real configuration shape and, where one exists offline, its real
tokenizer; and the recipes' hub datasets in the datasets cache. `HF_HUB_OFFLINE=1` makes transformers,
huggingface_hub and datasets resolve them through their normal cache code, with no special case in medsft.
Each recipe runs in a fresh process, as a user runs it, with small overrides: a few training steps, a few
evaluation items, one quantization.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
import yaml
from local_hub import MODELS, build_local_hub
from safetensors import safe_open

from medsft.runs import find_artifact

pytestmark = pytest.mark.integration

# recipe -> (the hub id it loads, overrides beyond SMALL). The two embedded recipes name their GPU model.
SEED_RECIPES = {
    "gemma3-270m/pipeline-cpu": ("unsloth/gemma-3-270m-it", {"model": "unsloth/gemma-3-270m-it"}),
    "gemma3-270m/medical-o1": ("unsloth/gemma-3-270m-it", {"model": "unsloth/gemma-3-270m-it"}),
    "gemma3-1b/medqa": ("unsloth/gemma-3-1b-it", {}),
    "gemma3-12b/clinical-tasks": ("unsloth/gemma-3-12b-it", {}),
    "gemma4-e2b/mixed": ("unsloth/gemma-4-E2B-it", {}),
    "llama3.2-1b/dialogues": ("unsloth/Llama-3.2-1B-Instruct", {}),
}
SMALL = {
    "train_rows": 40,  # 36 training and 4 validation rows: the 12B recipe would otherwise score 300 each time
    "max_steps": 3,
    "eval_every_steps": 3,
    "save_every_steps": 3,
    "select_checkpoint_by": "eval_loss",
    "max_seq_length": 512,
    "batch_size": 2,
    "gradient_accumulation_steps": 1,
    "eval_limit": 3,
    "eval_generate_limit": 1,
    "eval_max_new_tokens": 8,
    "export_quantizations": ["q8_0"],
    "export_check_items": 2,
}
NOTEBOOKS = ("01_data", "02_train", "03_evaluate", "04_export", "05_chat")
END_OF_TURN = {
    "gemma3": "<end_of_turn>",
    "gemma3-multimodal": "<end_of_turn>",
    "gemma4": "<turn|>",
    "llama3": "<|eot_id|>",
}


# How each recipe runs. `medsft run` (the runner injects `run_dir`) for the two 270M recipes; for one recipe of
# every other family, the five notebooks opened by hand as in Colab: papermill with `recipe` and `params` and
# no `run_dir`, each notebook starting its own run folder from the latest one holding what it needs.
BY_HAND = ("gemma3-1b/medqa", "gemma3-12b/clinical-tasks", "gemma4-e2b/mixed", "llama3.2-1b/dialogues")
DRIVER = f"""
import sys, yaml, papermill
recipe, params, out = sys.argv[1], yaml.safe_load(sys.argv[2]), sys.argv[3]
for name in {NOTEBOOKS!r}:
    papermill.execute_notebook(f"notebooks/{{name}}.ipynb", f"{{out}}/{{name}}.ipynb",
                               parameters={{"recipe": recipe, "params": params}}, progress_bar=False)
"""


@pytest.fixture(scope="session")
def seed_runs(tmp_path_factory: pytest.TempPathFactory, embedded_dir: Path) -> dict[str, tuple[Path, str]]:
    """Every seed recipe run once, two at a time (most of a run is single-threaded start-up and imports):
    recipe -> (its output folder, what the run printed)."""
    home = tmp_path_factory.mktemp("hf-home")
    build_local_hub(home, embedded_dir, sorted({repo for repo, _ in SEED_RECIPES.values()}))
    # A machine whose hub cache holds the seed models and datasets, and no network; one thread per tiny run.
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    repo = Path(__file__).resolve().parent.parent

    def launch(recipe: str) -> tuple[Path, str]:
        out = tmp_path_factory.mktemp(recipe.replace("/", "-"))
        params = {**SMALL, **SEED_RECIPES[recipe][1], "output_dir": str(out / "runs")}
        if recipe in BY_HAND:
            command = [sys.executable, "-c", DRIVER, recipe, yaml.safe_dump(params), str(out)]
        else:
            (out / "params.yaml").write_text(yaml.safe_dump({**params, "run_id": "seed"}), encoding="utf-8")
            command = [sys.executable, "-m", "medsft", "run", "-r", recipe, "-f", str(out / "params.yaml")]
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        return out, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(SEED_RECIPES, pool.map(launch, SEED_RECIPES), strict=True))


def read(path: Path | None) -> dict:
    assert path is not None and path.is_file(), path
    return json.loads(path.read_text(encoding="utf-8"))


def cell_output(notebook: Path, marker: str) -> str:
    """The text a reader sees under the first cell whose source holds `marker`."""
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code" and marker in cell.source:
            return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    raise AssertionError(f"no cell with {marker!r} in {notebook}")


@pytest.mark.parametrize("recipe", list(SEED_RECIPES))
def test_seed_recipe_runs_every_notebook_through_its_hub_model(
    recipe: str, seed_runs: dict[str, tuple[Path, str]]
) -> None:
    out, printed = seed_runs[recipe]
    repo_id = SEED_RECIPES[recipe][0]
    family = MODELS[repo_id].family
    assert printed.startswith("exit 0"), printed
    runs = sorted((p.parent for p in (out / "runs").glob("*/config.yaml")), key=lambda p: p.stat().st_mtime)
    if recipe in BY_HAND:  # one folder per notebook, each started from the one before
        assert len(runs) == len(NOTEBOOKS)
        notebooks = {name: out / f"{name}.ipynb" for name in NOTEBOOKS}
    else:
        assert [p.name for p in runs] == ["seed"]
        notebooks = {name: runs[0] / f"{name}.ipynb" for name in NOTEBOOKS}
        manifest = read(runs[0] / "manifest.json")
        assert manifest["status"] == "complete" and manifest["stages"] == [s.split("_")[1] for s in NOTEBOOKS]
    last = runs[-1]
    for name, notebook in notebooks.items():
        cells = nbformat.read(notebook, as_version=4).cells
        errors = [o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert errors == [], f"{name}: {errors[:1]}"
    assert yaml.safe_load((last / "config.yaml").read_text())["model"] == repo_id

    # Base and tuned scored, the base loaded by its hub id.
    evaluation = read(find_artifact(last, "eval_results.json"))
    assert evaluation["specs"]["base"] == repo_id and set(evaluation["models"]) == {"base", "tuned"}

    # Response-only labels, decoded as the train notebook shows them: the first training row's reply and its
    # end-of-turn marker are trained, its question is not.
    first = json.loads(find_artifact(last, "data/train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    reply = [m["content"] for m in first["messages"] if m["role"] == "assistant"][-1]
    question = [m["content"] for m in first["messages"] if m["role"] == "user"][0]
    trained = cell_output(notebooks["02_train"], "trained_text").replace("\\n", "\n")
    assert END_OF_TURN[family] in trained and reply.split("</think>")[-1].strip()[:40] in trained
    assert question[:40] not in trained
    result = read(find_artifact(last, "train_results.json"))
    assert result["global_step"] == 3 and result["trained_tokens"] > 0

    # Multimodal checkpoints: LoRA on the language model only, as FastModel's finetune_vision_layers=False.
    if family in ("gemma3-multimodal", "gemma4"):
        adapter = find_artifact(last, "adapter")
        with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as weights:
            names = list(weights.keys())
        assert names and all(".language_model." in name for name in names), names[:3]

    # Export: merged + GGUF with every check passed, and the card; chat through the file that passed.
    export = read(find_artifact(last, "export.json"))
    (gguf,) = export["files"]
    check = gguf["verification"]
    assert gguf["passed"] and gguf["status"] == "passed", gguf["reasons"]
    assert check["template_matches"] is True
    assert check["stop_tokens_end_generation"].get(END_OF_TURN[family]) is True
    assert (find_artifact(last, "merged") / "config.json").is_file()
    assert "## Intended use" in find_artifact(last, "model_card.md").read_text(encoding="utf-8")
    chat = read(last / "chat.json")
    assert chat["gguf"] == Path(gguf["path"]).name and chat["turns"] and chat["turns"][0]["tokens"] > 0
