"""bench/history.py: the benches' record of commits and figures, and the flag on a slide of 10% or more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loader import load_script


@pytest.fixture()
def history():
    return load_script("bench/history.py", "bench_history")


def test_a_run_is_recorded_with_its_commit_and_machine(history, tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    assert history.record("infer", {"llama.cpp Q8_0 tok/s": 62.0}, ["llama.cpp Q8_0 tok/s"], {"threads": 2}, path) == []
    (entry,) = json.loads(path.read_text())
    assert entry["bench"] == "infer" and entry["figures"] == {"llama.cpp Q8_0 tok/s": 62.0}
    assert entry["commit"].split("+")[0] and entry["machine"] and entry["settings"] == {"threads": 2}


def test_a_slide_of_ten_percent_is_flagged_only_against_the_same_bench_and_machine(history, tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    faster = ["tok/s"]
    history.record("infer", {"tok/s": 60.0, "GiB": 1.0}, faster, path=path)
    history.record("train_step", {"tok/s": 100.0}, faster, path=path)  # another bench: never compared
    slid = history.record("infer", {"tok/s": 53.0, "GiB": 1.05}, faster, path=path)
    assert len(slid) == 1 and slid[0].startswith("tok/s: 53 vs 60")
    assert history.record("infer", {"tok/s": 50.0, "GiB": 1.2}, faster, path=path)[0].startswith("GiB: 1.2 vs 1.05")
    entries = history.load(path)
    for entry in entries:
        entry["machine"] = "another CPU, 8 cores"
    path.write_text(json.dumps(entries))
    assert history.record("infer", {"tok/s": 10.0}, faster, path=path) == []  # no earlier run on this machine


def test_the_markdown_table_marks_the_slide(history, tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    history.record("infer", {"tok/s": 60.0}, ["tok/s"], path=path)
    history.record("infer", {"tok/s": 40.0}, ["tok/s"], path=path)
    table = history.markdown(history.load(path))
    assert table.startswith("`bench/infer.py`:") and "| 40 ↓ |" in table and "| 60 |" in table


def test_a_page_gets_the_tables_between_its_markers_and_keeps_the_rest(history, tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    history.record("train_step", {"medsft/trl": 2.6}, ["medsft/trl"], path=path)
    page = tmp_path / "speed.md"
    page.write_text(f"# Speed\n\nbefore\n{history.BEGIN}\nold table\n{history.END}\nafter\n")
    history.update_page(page, history.load(path))
    text = page.read_text()
    assert text.startswith("# Speed\n\nbefore\n") and text.endswith(f"{history.END}\nafter\n")
    assert "old table" not in text and "`bench/train_step.py`:" in text and "| 2.6 |" in text
    history.update_page(page, history.load(path))  # again: the same page, not a second table
    assert page.read_text() == text


def test_a_page_without_markers_is_an_error_naming_it(history, tmp_path: Path) -> None:
    page = tmp_path / "speed.md"
    page.write_text("# Speed\n")
    with pytest.raises(ValueError, match="speed.md: needs one line"):
        history.update_page(page, [])


def test_uncommitted_changes_mark_the_commit_dirty(history, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"rev-parse": "abc1234", "status": " M medsft/train/steps.py"}
    monkeypatch.setattr(history, "git", lambda *args: answers[args[0]])
    assert history.commit() == "abc1234+dirty"
    answers["status"] = ""
    assert history.commit() == "abc1234"
