"""The llama.cpp wheel's cache key: a build with other flags (the OpenMP one before issue 28) is neither reused
from the cache nor kept installed, and `make setup` reruns when the toolchain module changes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medsft.export import llamacpp_toolchain as toolchain

ROOT = Path(__file__).resolve().parent.parent
WHEEL = f"llama_cpp_python-{toolchain.VERSION}-py3-none-linux_x86_64.whl"


def test_the_build_flags_leave_openmp_out_and_key_the_cache() -> None:
    assert "-DGGML_OPENMP=OFF" in toolchain.CMAKE_ARGS.split()
    assert toolchain.build_key().startswith(f"{toolchain.VERSION}-")
    assert toolchain.wheel_dir().name == toolchain.build_key()


def test_a_wheel_built_with_other_flags_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSFT_CACHE", str(tmp_path))
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / WHEEL).write_bytes(b"")  # the old layout: one flat folder, flags not in the name
    monkeypatch.setattr(toolchain, "CMAKE_ARGS", "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF")  # the old, OpenMP flags
    old = toolchain.wheel_dir()
    old.mkdir()
    (old / WHEEL).write_bytes(b"")
    assert toolchain.cached_wheel() == old / WHEEL
    monkeypatch.undo()
    monkeypatch.setenv("MEDSFT_CACHE", str(tmp_path))
    assert toolchain.wheel_dir() != old and toolchain.cached_wheel() is None  # so setup builds the new one
    toolchain.wheel_dir().mkdir()
    (toolchain.wheel_dir() / WHEEL).write_bytes(b"")
    assert toolchain.cached_wheel() == toolchain.wheel_dir() / WHEEL


def test_an_install_from_another_build_is_not_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSFT_CACHE", str(tmp_path))
    monkeypatch.setattr(toolchain, "runtime_version", lambda: toolchain.VERSION)
    installed = {"url": f"file://{tmp_path}/wheels/{WHEEL}"}  # what pip wrote for the old flat-folder wheel
    monkeypatch.setattr(toolchain, "installed_wheel", lambda: installed["url"])
    assert not toolchain.runtime_is_current()  # so setup reinstalls (--force-reinstall: same version number)
    installed["url"] = f"file://{toolchain.wheel_dir() / WHEEL}"
    assert toolchain.runtime_is_current()
    monkeypatch.setattr(toolchain, "runtime_version", lambda: "0.3.35")
    assert not toolchain.runtime_is_current()


def test_installed_wheel_reads_what_pip_recorded() -> None:
    """This environment's own llama-cpp-python: a file URL when pip installed it from a wheel file, else None."""
    url = toolchain.installed_wheel()
    assert url is None or url.startswith("file://"), json.dumps(url)


def test_make_setup_reruns_when_the_toolchain_module_changes() -> None:
    """The stamp that gates `make setup` depends on the module holding CMAKE_ARGS (by its current path), so new
    flags rerun the set-up, which builds and installs the new wheel."""
    makefile = (ROOT / "Makefile").read_text()
    prerequisites = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE).group(1).split()
    module = Path(toolchain.__file__).resolve().relative_to(ROOT).as_posix()
    assert module in prerequisites
    assert all((ROOT / p).is_file() for p in prerequisites), prerequisites
    assert "-m medsft.export.llamacpp_toolchain setup" in makefile
