"""`medsft export`, `medsft chat`, `medsft serve`: `--help`, one-line input errors before any model loads, and
the fail-closed export rule (which file passes, what name it gets, how export.json, the card, the notebook
view and the exit code show a failure). The rule is unit-tested here on recorded numbers; the real llama.cpp
export runs in tests/test_export.py and the real server in tests/test_serve.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medsft.__main__ import main
from medsft.config import RunConfig
from medsft.export.gguf import rejected_name
from medsft.export.save import ExportResult, record_verdict, settle
from medsft.export.verify import judge


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse's own exits (--help, a wrong option)
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if anything tries to load a model or start an export."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("medsft.export.save.export_run", refuse)
    monkeypatch.setattr("medsft.export.export_run", refuse)
    monkeypatch.setattr("medsft.evaluate.gguf_scorer.load_gguf", refuse)
    monkeypatch.setattr("medsft.export.server.build_app", refuse)


def run_folder(tmp_path: Path, adapter: bool = True) -> Path:
    """A folder shaped like a training run (config.yaml, adapter_config.json); no weights, nothing loads it."""
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True) if adapter else run.mkdir()
    (run / "config.yaml").write_text("model: embedded\n", encoding="utf-8")
    if adapter:
        (run / "adapter" / "adapter_config.json").write_text("{}", encoding="utf-8")
    return run


# ---- --help and one-line input errors ----


@pytest.mark.parametrize(
    ("command", "expected"),
    [("export", ["RUN_DIR", "--quant", "--push", "--strict", "--allow-failed", "rejected.gguf"]),
     ("chat", ["RUN_DIR", "--gguf", "--prompt"]),
     ("serve", ["RUN_DIR", "--gguf", "--host", "--port", "127.0.0.1", "X-Medsft-Disclaimer", "--max-tokens",
                "--default-max-tokens", "--time-limit", "--queue-wait"])],
)  # fmt: skip
def test_each_command_has_help(capsys, command: str, expected: list[str]) -> None:
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    text = " ".join(out.split())  # argparse wraps lines
    assert all(word in text for word in expected), text


def test_export_without_run_dir_is_one_line(capsys, no_model_load) -> None:
    code, _, err = run_cli(capsys, "export")
    assert (code, err) == (2, "medsft: the following arguments are required: RUN_DIR")


def test_export_of_a_missing_folder_names_it(capsys, tmp_path, no_model_load) -> None:
    code, _, err = run_cli(capsys, "export", str(tmp_path / "nope"))
    assert code == 2
    assert err == f"medsft: {tmp_path / 'nope'}: no such run folder (give a folder under outputs/ that a run wrote)"


def test_export_without_an_adapter_says_train_first(capsys, tmp_path, no_model_load) -> None:
    run = run_folder(tmp_path, adapter=False)
    code, _, err = run_cli(capsys, "export", str(run))
    assert code == 2 and "\n" not in err
    assert err == f"medsft: {run} has no trained adapter (adapter/adapter_config.json); train first: medsft run"


def test_export_of_a_folder_that_is_no_run(capsys, tmp_path, no_model_load) -> None:
    code, _, err = run_cli(capsys, "export", str(tmp_path))
    assert code == 2
    assert err == f"medsft: {tmp_path} is not a run folder (no config.yaml); give the folder a training run wrote"


def test_export_names_an_unknown_quantization(capsys, tmp_path, no_model_load) -> None:
    code, _, err = run_cli(capsys, "export", str(run_folder(tmp_path)), "--quant", "q8_0,q3_k")
    assert code == 2 and err == "medsft: --quant: unknown quantization 'q3_k'; choose from f16, q8_0, q5_k_m, q4_k_m"


def test_export_push_needs_a_token_before_exporting(capsys, tmp_path, monkeypatch, no_model_load) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    code, _, err = run_cli(capsys, "export", str(run_folder(tmp_path)), "--push", "me/model")
    assert code == 2 and err == "medsft: --push needs a Hugging Face token in the HF_TOKEN environment variable"


@pytest.mark.parametrize("command", ["chat", "serve"])
def test_chat_and_serve_need_a_run_or_a_file(capsys, command: str, no_model_load) -> None:
    code, _, err = run_cli(capsys, command)
    assert (code, err) == (2, "medsft: give a RUN_DIR or --gguf FILE (exactly one)")


@pytest.mark.parametrize("command", ["chat", "serve"])
def test_a_missing_gguf_is_one_line(capsys, tmp_path, command: str, no_model_load) -> None:
    missing = tmp_path / "none.gguf"
    code, _, err = run_cli(capsys, command, "--gguf", str(missing))
    assert (code, err) == (2, f"medsft: --gguf {missing}: file not found; export one with: medsft export RUN_DIR")


@pytest.mark.parametrize("command", ["chat", "serve"])
def test_a_rejected_gguf_is_refused(capsys, tmp_path, command: str, no_model_load) -> None:
    rejected = tmp_path / "m-run-Q4_K_M.rejected.gguf"
    rejected.write_bytes(b"GGUF")
    code, _, err = run_cli(capsys, command, "--gguf", str(rejected))
    assert code == 2 and "failed its export check" in err and "\n" not in err


def test_chat_on_a_run_without_a_model_says_train_first(capsys, tmp_path, no_model_load) -> None:
    run = run_folder(tmp_path, adapter=False)
    code, _, err = run_cli(capsys, "chat", str(run), "--prompt", "hi")
    assert code == 2
    assert err == f"medsft: {run} holds no trained model (no adapter/, merged/ or gguf/); train first: medsft run"


def test_serve_on_a_trained_but_unexported_run_says_export_first(capsys, tmp_path, no_model_load) -> None:
    run = run_folder(tmp_path)
    code, _, err = run_cli(capsys, "serve", str(run))
    assert code == 2 and err == f"medsft: no GGUF file in {run}/gguf; run the export first: medsft export {run}"


def test_chat_never_picks_a_rejected_file_from_a_run(capsys, tmp_path, no_model_load) -> None:
    run = run_folder(tmp_path)
    (run / "gguf").mkdir()
    (run / "gguf" / "m-run-Q8_0.rejected.gguf").write_bytes(b"GGUF")
    code, _, err = run_cli(capsys, "chat", str(run), "--prompt", "hi")
    assert code == 2 and "failed its export check" in err and "\n" not in err


def test_serve_reports_a_busy_port_before_loading(capsys, tmp_path, no_model_load) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_cli(capsys, "serve", "--gguf", str(gguf), "--port", str(port))
    assert code == 2 and err.startswith(f"medsft: cannot listen on 127.0.0.1:{port} (") and "--port" in err


@pytest.mark.parametrize(
    ("limits", "error"),
    [(["--max-tokens", "0"], "--max-tokens must be at least 1, got 0"),
     (["--max-tokens", "100", "--default-max-tokens", "200"],
      "--default-max-tokens must be from 1 to --max-tokens (100), got 200"),
     (["--time-limit", "0"], "--time-limit must be a positive number of seconds, got 0.0"),
     (["--time-limit", "nan"], "--time-limit must be a positive number of seconds, got nan"),
     (["--queue-wait", "-1"], "--queue-wait must be 0 or more seconds, got -1.0")],
)  # fmt: skip
def test_serve_names_a_bad_limit_before_loading(capsys, tmp_path, no_model_load, limits, error) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    code, _, err = run_cli(capsys, "serve", "--gguf", str(gguf), *limits)
    assert (code, err) == (2, f"medsft: {error}")


def test_serve_passes_its_limits_on(capsys, tmp_path, monkeypatch) -> None:
    """--max-tokens below the default max_tokens lowers the default with it."""
    from medsft.export.server_checks import Limits

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    got: dict[str, Any] = {}

    def serve(gguf: Path, host: str, port: int, n_ctx: int, limits: Limits) -> int:
        got["limits"] = limits
        return 0

    monkeypatch.setattr("medsft.export.server.serve", serve)
    assert run_cli(capsys, "serve", "--gguf", str(gguf), "--max-tokens", "100", "--time-limit", "5")[0] == 0
    assert got["limits"] == Limits(max_tokens=100, default_max_tokens=100, time_limit_s=5.0)


def test_an_error_line_ends_with_a_newline_whatever_the_message(capsys) -> None:
    from medsft.cli_errors import error_line

    error_line("cannot load m.gguf: llama.cpp said\r\n\nno model  ")
    assert capsys.readouterr().err == "medsft: cannot load m.gguf: llama.cpp said\nno model\n"


def cli(*args: str) -> subprocess.CompletedProcess:
    """The real command in a subprocess: what a shell shows, stderr and exit code, llama.cpp's output included."""
    return subprocess.run([sys.executable, "-m", "medsft", *args], capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", ["chat", "serve", "export"])
def test_the_commands_error_lines_end_with_a_newline(tmp_path, command: str) -> None:
    """Issue 27: `medsft chat --gguf FILE` on a file that is not a GGUF left the shell prompt on the error's line.
    Each command on a bad file or folder: exit 2 and one line `medsft: ...` ending with a newline."""
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("these are notes, not a model", encoding="utf-8")
    args = {
        "chat": ["chat", "--gguf", str(not_gguf), "--prompt", "hi"],
        "serve": ["serve", "--gguf", str(not_gguf), "--port", str(free_port())],
        "export": ["export", str(tmp_path)],
    }[command]
    done = cli(*args)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("medsft: ") and done.stderr.endswith("\n") and done.stderr.count("\n") == 1
    if command != "export":
        assert f"cannot load {not_gguf}" in done.stderr


# ---- fail-closed export: the decision on recorded numbers ----


def record(
    agree: int, accuracy: dict[str, tuple[float, float, float, float]], goal: float = 0.02, mcnemar_p: float = 0.01
) -> dict[str, Any]:
    """A file's export.json record: first-token agreement out of 16, and per task (acc, reference, diff CI)."""
    return {
        "quantization": "q4_k_m",
        "verification": {"first_tokens_agree": agree, "first_tokens_compared": 16},
        "accuracy": {
            task: {
                "n": 32,
                "acc": acc,
                "reference_acc": ref,
                "diff": acc - ref,
                "diff_ci": [low, high],
                "mcnemar_p": mcnemar_p,
                "goal": goal,
            }
            for task, (acc, ref, low, high) in accuracy.items()
        },
    }


def test_the_committed_runs_q4_k_m_fails_on_both_counts() -> None:
    """0 of 16 first tokens, and 12.5 points below 16-bit with the interval below the 2-point goal."""
    verdict = judge(record(0, {"synthetic": (0.0625, 0.1875, -0.25, -0.03)}), RunConfig.export_min_token_agreement)
    assert not verdict.passed and len(verdict.reasons) == 2
    assert verdict.reasons[0].startswith("first greedy tokens: 0/16 agree with 16-bit")
    assert verdict.reasons[1].startswith("synthetic: accuracy 0.062 vs 16-bit 0.188 (n=32), diff -0.125")


def test_the_committed_runs_q8_0_passes() -> None:
    """6 of 16 first tokens (greedy paths fork at near-ties) and the same accuracy as 16-bit."""
    verdict = judge(record(6, {"medqa": (0.531, 0.531, 0.0, 0.0)}, goal=0.005), RunConfig.export_min_token_agreement)
    assert verdict.passed and verdict.reasons == []


def test_a_loss_within_sampling_noise_does_not_fail_a_file() -> None:
    """Below the goal, but the interval still reaches it: not evidence of a broken file."""
    assert judge(record(16, {"medqa": (0.50, 0.55, -0.15, 0.05)}), 0.25).passed


def test_a_loss_that_mcnemar_does_not_confirm_does_not_fail_a_file() -> None:
    """This session's default run: Q8_0 agreed on 16/16 first tokens, and 4 MedQA questions of 32 flipped, all
    one way (0.344 vs 0.469, bootstrap [-0.25, -0.03]); the exact McNemar p is 0.125, so the file passes."""
    medqa = {"medqa": (0.344, 0.469, -0.25, -0.03125)}
    assert judge(record(16, medqa, goal=0.005, mcnemar_p=0.125), RunConfig.export_min_token_agreement).passed
    verdict = judge(record(16, medqa, goal=0.005, mcnemar_p=0.02), RunConfig.export_min_token_agreement)
    assert not verdict.passed and verdict.reasons[0].startswith("medqa: accuracy 0.344 vs 16-bit 0.469")


def test_too_few_agreeing_first_tokens_fail_a_file_alone() -> None:
    verdict = judge(record(3, {}), 0.25)
    assert not verdict.passed and verdict.reasons == [
        "first greedy tokens: 3/16 agree with 16-bit, below the required share 0.25 (export_min_token_agreement)"
    ]
    assert judge(record(4, {}), 0.25).passed


def checked_file(folder: Path, quant: str = "Q4_K_M") -> tuple[Path, Path]:
    final = folder / f"m-run-{quant}.gguf"
    partial = folder / f".{final.name}.partial"
    partial.write_bytes(b"GGUF")
    return partial, final


def test_a_failed_file_never_gets_the_final_name(tmp_path: Path) -> None:
    partial, final = checked_file(tmp_path)
    place = settle(partial, final, passed=False, strict=False)
    assert place == tmp_path / "m-run-Q4_K_M.rejected.gguf" == rejected_name(final)
    assert not final.exists() and not partial.exists() and place.read_bytes() == b"GGUF"
    assert list(tmp_path.glob("*-Q4_K_M.gguf")) == []  # what chat, find_gguf and users look for


def test_strict_deletes_a_failed_file(tmp_path: Path) -> None:
    partial, final = checked_file(tmp_path)
    assert settle(partial, final, passed=False, strict=True) is None
    assert list(tmp_path.iterdir()) == []


def test_a_passing_file_replaces_an_earlier_rejected_one(tmp_path: Path) -> None:
    partial, final = checked_file(tmp_path)
    rejected_name(final).write_bytes(b"old")
    assert settle(partial, final, passed=True, strict=False) == final
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-run-Q4_K_M.gguf"]


def failed_export(tmp_path: Path) -> ExportResult:
    """An ExportResult as export_run leaves it after Q8_0 passed and Q4_K_M failed (recorded numbers)."""
    files = []
    for quant, item in (("q8_0", record(6, {"medqa": (0.53, 0.53, 0.0, 0.0)})),
                        ("q4_k_m", record(0, {"synthetic": (0.0625, 0.1875, -0.25, -0.03)}))):  # fmt: skip
        item["quantization"] = quant
        item["verification"].update(template_matches=True, stop_tokens_end_generation={"<end_of_turn>": True})
        for acc in item["accuracy"].values():
            acc["within_goal"] = acc["diff"] == 0
        verdict = judge(item, RunConfig.export_min_token_agreement)
        item.update(passed=verdict.passed, reasons=verdict.reasons)
        item["size"] = {"quantization": quant, "file": "", "file_mib": 286.0, "ram_gib": 0.5, "n_ctx": 4096}
        partial, final = checked_file(tmp_path, quant.upper())
        record_verdict(item, settle(partial, final, verdict.passed, strict=False))
        files.append(item)
    return ExportResult(
        run_dir=tmp_path, adapter_dir=tmp_path, merged_dir=tmp_path, files=files,
        size_table=[f["size"] for f in files], failed=["q4_k_m"],
    )  # fmt: skip


def test_export_json_marks_the_failed_file(tmp_path: Path) -> None:
    data = json.loads(json.dumps(failed_export(tmp_path).to_dict()))
    good, bad = data["files"]
    assert (good["passed"], good["status"], Path(good["path"]).name) == (True, "passed", "m-run-Q8_0.gguf")
    assert (bad["passed"], bad["status"], Path(bad["path"]).name) == (False, "rejected", "m-run-Q4_K_M.rejected.gguf")
    assert bad["reasons"] and data["failed"] == ["q4_k_m"]
    assert [row["passed"] for row in data["size_table"]] == [True, False]


def test_the_card_shows_the_failed_file_as_failed_with_its_numbers(tmp_path: Path) -> None:
    from medsft.export.card import card_text

    card = card_text(tmp_path, failed_export(tmp_path).to_dict())
    assert "| m-run-Q4_K_M.rejected.gguf | q4_k_m | **FAILED** | 286.0 |" in card
    assert "| m-run-Q8_0.gguf | q8_0 | passed | 286.0 |" in card
    assert "| q4_k_m | **FAILED** | 0/16 | synthetic | 32 | 0.062 | 0.188 | -0.125 [-0.250, -0.030] |" in card
    assert "- **q4_k_m failed its check** (m-run-Q4_K_M.rejected.gguf): first greedy tokens: 0/16" in card


def test_the_notebook_view_shows_the_failed_file_as_failed(tmp_path: Path) -> None:
    from medsft import stages as views

    checks = views.check_frame(failed_export(tmp_path)).set_index("quantization")
    assert checks.loc["q4_k_m", "check"] == "FAILED" and checks.loc["q4_k_m", "file"] == "rejected"
    assert "0/16 agree" in checks.loc["q4_k_m", "why it failed"]
    assert checks.loc["q8_0", "check"] == "passed" and checks.loc["q8_0", "why it failed"] == ""
    assert views.size_frame(failed_export(tmp_path)).loc["q4_k_m", "check"] == "FAILED"


@pytest.mark.parametrize(("extra", "code"), [([], 1), (["--allow-failed"], 0)])
def test_export_exits_non_zero_when_a_file_failed(capsys, tmp_path, monkeypatch, extra, code) -> None:
    """The command's exit code on export_run's recorded result (the export itself runs in test_export.py)."""
    run = run_folder(tmp_path)
    result = failed_export(tmp_path / "run")
    monkeypatch.setattr("medsft.export.export_run", lambda *args, **kwargs: result)
    got, out, err = run_cli(capsys, "export", str(run), *extra)
    assert got == code
    assert "q4_k_m  FAILED  m-run-Q4_K_M.rejected.gguf" in out and "why: first greedy tokens: 0/16" in out
    assert ("failed the export check" in err) == (code == 1)
