"""Export: quantization names, toolchain and disk errors, the chat-template and stop-token checks on real GGUF
files, and a full `export_run` (merge, llama.cpp convert + quantize, verify, score, card) on a tiny Gemma 3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from medsft import DISCLAIMER
from medsft.config import build_config
from medsft.export import ExportError, VerificationError, check_quantizations, export_run, push_to_hub
from medsft.export.llamacpp_toolchain import ToolchainError, check_disk, find_toolchain
from medsft.export.verify import check_template, end_of_turn_ids


def test_quantization_names_are_checked() -> None:
    assert check_quantizations(["Q8_0", "q4_k_m", "q8_0"]) == ["q8_0", "q4_k_m"]
    with pytest.raises(ExportError, match=r"unknown quantization 'q3_k'.*f16, q8_0, q5_k_m, q4_k_m"):
        check_quantizations(["q8_0", "q3_k"])
    with pytest.raises(ExportError, match="no quantization"):
        check_quantizations([])


def test_missing_toolchain_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSFT_LLAMA_CPP", str(tmp_path / "nowhere"))
    with pytest.raises(ToolchainError, match=r"missing convert_hf_to_gguf.py.*medsft.export.llamacpp_toolchain setup"):
        find_toolchain()


def test_not_enough_disk_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"not enough disk for the merged model in .*needs about 1048576.0 GiB"):
        check_disk(tmp_path, 2**50, "the merged model")


def test_push_to_hub_needs_a_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ExportError, match="HF_TOKEN environment variable"):
        push_to_hub(tmp_path, "me/model")


def test_template_check_accepts_the_training_template(gemma_tokenizer) -> None:
    check_template(gemma_tokenizer.chat_template, gemma_tokenizer, "x.gguf")


def test_template_check_names_the_difference(gemma_tokenizer) -> None:
    other = gemma_tokenizer.chat_template.replace("<end_of_turn>", "<eot>")
    with pytest.raises(VerificationError, match=r"x.gguf: the embedded chat template does not match.*<eot>"):
        check_template(other, gemma_tokenizer, "x.gguf")
    with pytest.raises(VerificationError, match="no embedded chat template"):
        check_template(None, gemma_tokenizer, "x.gguf")


def test_end_of_turn_ids_include_the_template_marker(gemma_tokenizer) -> None:
    assert end_of_turn_ids(gemma_tokenizer, [1, 106]) == {"<eos>": 1, "<end_of_turn>": 106}
    # A checkpoint whose generation config lists only <eos> still stops at the template's end of turn.
    assert end_of_turn_ids(gemma_tokenizer, 1) == {"<eos>": 1, "<end_of_turn>": 106}


def test_end_of_turn_marker_of_llama3(llama_tokenizer) -> None:
    stops = end_of_turn_ids(llama_tokenizer, None)
    assert "<|eot_id|>" in stops


# ---- real llama.cpp on a tiny random Gemma 3 (real tokenizer and template) ----


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_gemma_dir: Path) -> Path:
    """A run folder as training leaves it: config.yaml and a LoRA adapter on the tiny model."""
    from medsft.train.backend import TransformersBackend

    find_toolchain()  # the suite needs the toolchain `make setup` builds; fail loudly if absent
    run = tmp_path_factory.mktemp("runs") / "tiny-run"
    run.mkdir()
    config = build_config({"model": str(tiny_gemma_dir), "lora_r": 4, "lora_alpha": 8})
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()), encoding="utf-8")
    backend = TransformersBackend("test")
    model, tokenizer = backend.load(config)
    model = backend.add_lora(model, config)
    backend.save_adapter(model, tokenizer, run / "adapter")
    return run


@pytest.fixture(scope="module")
def exported(tiny_run: Path):
    return export_run(tiny_run, quantizations=["q8_0", "q4_k_m"], eval_tasks=["medqa"], eval_limit=4)


def test_export_writes_verified_files_and_a_card(exported, tiny_run: Path) -> None:
    names = sorted(p.name for p in (tiny_run / "gguf").iterdir())
    assert len(names) == 3 and names[0] == "README.md"
    assert "-tiny-run-Q4_K_M" in names[1] and names[2].startswith("tiny-gemma0-tiny-run-Q8_0")
    assert not list(tiny_run.rglob("*.partial")), "no temporary file may survive a finished export"
    assert (tiny_run / "merged" / "config.json").is_file()
    record = json.loads((tiny_run / "export.json").read_text())
    assert [f["quantization"] for f in record["files"]] == ["q8_0", "q4_k_m"]
    for item in record["files"]:
        check = item["verification"]
        assert check["template_matches"] is True
        assert check["stop_tokens_end_generation"] == {"<eos>": True, "<end_of_turn>": True}
        assert check["first_tokens_compared"] > 0 and 0 <= check["first_tokens_agree"] <= check["first_tokens_compared"]
        medqa = item["accuracy"]["medqa"]
        assert medqa["n"] == 4 and 0.0 <= medqa["acc"] <= 1.0 and medqa["goal"] > 0
        assert Path(item["path"]).is_file() and Path(item["path"]).stat().st_size > 1_000_000
    sizes = {row["quantization"]: row for row in record["size_table"]}
    assert 0 < sizes["q4_k_m"]["file_mib"] <= sizes["q8_0"]["file_mib"]  # tiny rows fall back to Q8_0 blocks
    assert 0.02 < sizes["q8_0"]["ram_gib"] < 4
    card = (tiny_run / "model_card.md").read_text()
    assert DISCLAIMER in card and "## Intended use" in card and "## Limitations" in card
    q8_0 = record["files"][0]["verification"]
    row = f"{q8_0['first_tokens_agree']}/{q8_0['first_tokens_compared']} | medqa | 4 |"
    assert row in card and (tiny_run / "gguf" / "README.md").read_text() == card


def test_export_fails_closed_on_the_real_files(exported, tiny_run: Path) -> None:
    """Each real file's verdict follows from its measured numbers, and only a file that passed carries a good
    file's name. (On the random tiny model the 4-bit file leaves 16-bit's greedy path at once, 1 of 16 tokens
    on the reference machine, so it is the one rejected there.)"""
    from medsft.config import RunConfig
    from medsft.export.verify import judge

    record = json.loads((tiny_run / "export.json").read_text())
    card = (tiny_run / "model_card.md").read_text()
    for item in record["files"]:
        verdict = judge(item, RunConfig.export_min_token_agreement)
        assert (item["passed"], item["reasons"]) == (verdict.passed, verdict.reasons)
        name = Path(item["path"]).name
        assert name.endswith(".rejected.gguf") != item["passed"]
        assert item["status"] == ("passed" if item["passed"] else "rejected")
        assert f"| {name} | {item['quantization']} | {'passed' if item['passed'] else '**FAILED**'} |" in card
    assert record["failed"] == [f["quantization"] for f in record["files"] if not f["passed"]]
    assert exported.failed == record["failed"]


def test_f16_gguf_scores_like_the_merged_checkpoint(exported, tiny_run: Path, tmp_path: Path) -> None:
    """llama.cpp's converter on the merged folder, scored by the same task code as transformers: same
    MedQA tokenization and the same choice log-likelihoods up to float16 rounding."""
    from medsft.evaluate import HFScorer
    from medsft.evaluate.gguf_scorer import LlamaCppScorer
    from medsft.evaluate.multiple_choice import score_items
    from medsft.export.gguf import convert
    from medsft.tasks import load_items

    f16 = convert(find_toolchain(), tiny_run / "merged", tmp_path / "tiny-F16.gguf")
    hf = HFScorer.from_spec(str(tiny_run / "merged"))
    gguf = LlamaCppScorer(f16)
    items = load_items("medqa", limit=3)
    prompt = "Question: A 45-year-old woman has fever.\nA. x\nB. y\nAnswer:"
    assert gguf.tokenize(prompt) == hf.tokenize(prompt)
    hf_scores = [s for row in score_items(hf, "medqa", items) for s in row["scores"]]
    gguf_scores = [s for row in score_items(gguf, "medqa", items) for s in row["scores"]]
    assert max(abs(a - b) for a, b in zip(hf_scores, gguf_scores, strict=True)) < 0.02
    gguf.close()


def test_export_refuses_to_overwrite(exported, tiny_run: Path) -> None:
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        export_run(tiny_run, quantizations=["q8_0"], eval_tasks=None)


def test_a_failed_check_leaves_nothing_under_a_final_name(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "fails"
    run.mkdir()
    shutil.copy(tiny_run / "config.yaml", run / "config.yaml")
    shutil.copytree(tiny_run / "adapter", run / "adapter")

    def mismatch(*args, **kwargs):
        raise VerificationError("template mismatch (injected)")

    monkeypatch.setattr("medsft.export.save.check_files", mismatch)
    with pytest.raises(VerificationError, match="injected"):
        export_run(run, quantizations=["q8_0"], eval_tasks=None)
    assert not list((run / "gguf").iterdir()), "unverified GGUF files must be removed"
    assert not (run / "export.json").exists()


def test_gguf_with_another_template_fails_the_check(exported, tiny_run: Path, llama_tokenizer) -> None:
    """A real GGUF (Gemma template inside) checked against a Llama 3 training template."""
    from medsft.evaluate.gguf_scorer import LlamaCppScorer

    gguf = LlamaCppScorer(next((tiny_run / "gguf").glob("*Q8_0.gguf")))
    assert "<start_of_turn>" in gguf.chat_template()
    with pytest.raises(VerificationError, match="does not match the training template"):
        check_template(gguf.chat_template(), llama_tokenizer, str(gguf.path))
    gguf.close()


def test_export_asks_for_an_adapter(tmp_path: Path, tiny_run: Path) -> None:
    shutil.copy(tiny_run / "config.yaml", tmp_path / "config.yaml")
    with pytest.raises(ExportError, match="no LoRA adapter in .*train first"):
        export_run(tmp_path, quantizations=["q8_0"])


# ---- offline chat ----


def test_think_block_is_split_even_when_tags_are_cut_across_chunks() -> None:
    from medsft.export.chat import split_stream

    text = "<think>\n1. Summary: chest pain.\n</think>\nFinal answer: ACS; give aspirin."
    for size in (1, 2, 3, 5, 7, 100):
        parts = list(split_stream(text[i : i + size] for i in range(0, len(text), size)))
        think = "".join(t for kind, t in parts if kind == "think")
        answer = "".join(t for kind, t in parts if kind == "answer")
        assert think == "\n1. Summary: chest pain.\n" and answer == "\nFinal answer: ACS; give aspirin.", size
    assert list(split_stream(["no tags <thi", "s is fine"])) == [("answer", "no tags "), ("answer", "<this is fine")]


def test_chat_cli_answers_offline_with_the_disclaimer(exported, tiny_run: Path) -> None:
    import subprocess
    import sys

    gguf = next((tiny_run / "gguf").glob("*Q8_0.gguf"))
    done = subprocess.run(
        [sys.executable, "-m", "medsft.export.chat", "--gguf", str(gguf), "--prompt", "Chest pain: first step?",
         "--max-tokens", "8"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[answer]" in done.stdout or "[thinking]" in done.stdout
    assert done.stdout.rstrip().endswith(DISCLAIMER)


def test_chat_cli_names_a_missing_file(tmp_path: Path) -> None:
    from medsft.export.chat import main

    assert main(["--gguf", str(tmp_path / "none.gguf"), "--prompt", "hi"]) == 2


def test_chat_stage_records_the_transcript(exported, tiny_run: Path) -> None:
    from medsft.stages import chat_stage

    transcript = chat_stage(tiny_run, ["First question?", "A follow-up?"], "q8_0", max_tokens=6)
    saved = json.loads((tiny_run / "chat.json").read_text())
    assert saved == transcript and saved["gguf"].endswith("Q8_0.gguf") and saved["disclaimer"] == DISCLAIMER
    assert [t["question"] for t in saved["turns"]] == ["First question?", "A follow-up?"]
    # tokens are counted by re-tokenizing the reply text, which can split differently from generation
    assert all(0 < t["tokens"] <= 12 and t["seconds"] > 0 for t in saved["turns"]), saved["turns"]
