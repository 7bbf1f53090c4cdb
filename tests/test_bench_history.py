"""bench/history.py: the benches' record of commits and figures, and the flag on a slide of 10% or more."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def history():
    spec = importlib.util.spec_from_file_location("bench_history", ROOT / "bench" / "history.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
