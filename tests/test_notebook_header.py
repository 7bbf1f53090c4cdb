"""The set-up cell every notebook opens with: one short cell, the same in each, cloning only the address given."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from medsft.pipeline import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def header(notebook: Path) -> str:
    cells = nbformat.read(notebook, as_version=4).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")  # the notebook's title
    return next(c.source for c in cells if c.cell_type == "code")


class FakeShell:
    """Records what the cell asks IPython to run (`!cmd`, `%magic`), with `{name}` expanded as IPython does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.namespace: dict = {"get_ipython": lambda: self}

    def system(self, command: str) -> None:
        self.calls.append(("!", command.format_map(self.namespace)))

    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1) -> None:
        self.calls.append((f"%{name}", line))


def run_header(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, colab: bool) -> FakeShell:
    monkeypatch.chdir(tmp_path)  # a fresh Colab runtime: no medsft checkout here
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    shell = FakeShell()
    exec(TransformerManager().transform_cell(header(NOTEBOOKS[0])), shell.namespace)
    return shell


def test_every_notebook_opens_with_the_same_short_setup_cell() -> None:
    headers = {notebook.name: header(notebook) for notebook in NOTEBOOKS}
    assert {"01_data.ipynb", "05_chat.ipynb"} <= set(headers) and len(set(headers.values())) == 1
    source = headers["01_data.ipynb"]
    assert 'if "google.colab" in sys.modules' in source and len(source.splitlines()) <= 15


def test_setup_cell_names_no_repository_address() -> None:
    assert not re.search(r"https?://|github\.com|git@", header(NOTEBOOKS[0]))


def test_outside_colab_the_setup_cell_does_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDSFT_REPO", "https://example.org/me/medsft.git")
    assert run_header(monkeypatch, tmp_path, colab=False).calls == []


def test_in_colab_without_an_address_the_setup_cell_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MEDSFT_REPO", raising=False)
    with pytest.raises(RuntimeError, match=r"set medsft_repo in this cell \(or MEDSFT_REPO\)"):
        run_header(monkeypatch, tmp_path, colab=True)


def test_in_colab_the_setup_cell_clones_the_given_address_and_installs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MEDSFT_REPO", "https://example.org/me/medsft.git")
    assert run_header(monkeypatch, tmp_path, colab=True).calls == [
        ("!", 'git clone --depth 1 "https://example.org/me/medsft.git" medsft'),
        ("%cd", "medsft"),
        ("%pip", "install --quiet -r requirements.txt"),
    ]


def test_in_colab_an_existing_checkout_is_reused_without_an_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MEDSFT_REPO", raising=False)
    (tmp_path / "medsft").mkdir()  # cloned before the runtime restarted
    calls = run_header(monkeypatch, tmp_path, colab=True).calls
    assert calls == [("%cd", "medsft"), ("%pip", "install --quiet -r requirements.txt")]
