"""scripts/gpu_bundle.py's planning part and .gpu/run.sh's budget, with no network and no GPU; gpu_check's time caps."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = (ROOT / "requirements.txt").read_text(encoding="utf-8")
RUN_SH = ROOT / "scripts" / "gpu_run.sh"


def load(name: str) -> ModuleType:
    return load_script(f"scripts/{name}.py")


@pytest.fixture(scope="module")
def bundle() -> ModuleType:
    return load("gpu_bundle")


@pytest.fixture(scope="module")
def check() -> ModuleType:
    return load("gpu_check")


# ----------------------------------------------------------------------------------------------- the plan
def test_it_carries_what_the_image_lacks_at_the_pinned_versions(bundle):
    plan = bundle.plan_bundle(REQUIREMENTS)
    carried = {w.name: w.version for w in plan.wheels}
    pins = bundle.requirement_pins(REQUIREMENTS)
    for name in ("unsloth", "unsloth-zoo", "trl", "peft", "datasets", "bitsandbytes"):
        assert carried[name] == pins[name]
    # the image already has these at the pinned versions, and torch is the image's own CUDA build
    assert not {"transformers", "accelerate", "torch"} & set(carried)
    assert "transformers" in plan.not_carried and "xformers" in plan.not_carried


def test_a_package_the_image_has_at_another_version_is_carried(bundle):
    image = {**bundle.GPU_IMAGE, "transformers": "5.16.0"}
    plan = bundle.plan_bundle(REQUIREMENTS, image)
    assert ("transformers", "5.17.0") in {(w.name, w.version) for w in plan.wheels}


def test_a_stage_package_without_a_pin_stops_the_plan(bundle):
    unpinned = re.sub(r"(?m)^trl==.*$", "trl", REQUIREMENTS)
    with pytest.raises(ValueError, match="trl"):
        bundle.plan_bundle(unpinned)


def test_the_planned_bundle_fits_its_size_limit_and_an_oversized_one_is_refused(bundle):
    plan = bundle.plan_bundle(REQUIREMENTS)
    budget = {name: mib * 2**20 for name, mib in plan.budget_mib.items()}
    assert bundle.check_size(budget, bundle.LIMIT_MIB) == pytest.approx(plan.total_budget_mib)
    assert set(plan.budget_mib) >= {"llama.cpp.tar.xz", "models.tar.xz", "run.sh", "wheels/unsloth"}
    with pytest.raises(ValueError, match=r"wheels/unsloth 61\.0 MiB"):
        bundle.check_size({**budget, "wheels/unsloth": 61 * 2**20}, bundle.LIMIT_MIB)


def test_the_download_is_binary_for_python_3_12_manylinux_without_dependencies(bundle, tmp_path):
    command = bundle.pip_download_command("trl", "1.15.0", tmp_path, python="python3")
    assert command[:4] == ["python3", "-m", "pip", "download"]
    assert "--no-deps" in command and "--only-binary=:all:" in command
    assert command[command.index("--python-version") + 1] == "3.12"
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert "manylinux_2_28_x86_64" in platforms and all(p.endswith("x86_64") for p in platforms)
    assert command[-1] == "trl==1.15.0"


@pytest.mark.parametrize(
    ("path", "dropped"),
    [
        ("bitsandbytes/libbitsandbytes_cuda130.so", False),  # the image's torch is cu130
        ("bitsandbytes/libbitsandbytes_cpu.so", False),
        ("bitsandbytes/libbitsandbytes_cuda128.so", True),
        ("bitsandbytes/libbitsandbytes_rocm72.so", True),
        ("bitsandbytes/functional.py", False),
    ],
)
def test_bitsandbytes_keeps_only_its_cuda_13_and_cpu_libraries(bundle, path, dropped):
    assert bundle.drop_bitsandbytes(path) is dropped


def test_unsloth_loses_its_web_app_and_cli_but_not_the_library(bundle):
    assert bundle.drop_unsloth("studio/frontend/dist/assets/chat.js")
    assert bundle.drop_unsloth("unsloth_cli/commands/train.py")
    assert not bundle.drop_unsloth("unsloth/models/loader.py")
    assert not bundle.drop_unsloth("unsloth-2026.10.9.dist-info/METADATA")


def test_a_pruned_wheel_lists_in_its_record_exactly_the_files_it_holds(bundle, tmp_path):
    source = tmp_path / "demo-1.0-py3-none-any.whl"
    files = {"demo/__init__.py": b"x = 1\n", "studio/app.js": b"big", "demo-1.0.dist-info/METADATA": b"Name: demo\n"}
    with zipfile.ZipFile(source, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("demo-1.0.dist-info/RECORD", "".join(f"{n},sha256=x,{len(d)}\n" for n, d in files.items()))
    target = tmp_path / "out" / source.name
    target.parent.mkdir()
    assert bundle.prune_wheel(source, target, bundle.drop_unsloth) == ["studio/app.js"]
    with zipfile.ZipFile(target) as wheel:
        names = set(wheel.namelist())
        record = [row[0] for row in csv.reader(io.StringIO(wheel.read("demo-1.0.dist-info/RECORD").decode()))]
        assert wheel.read("demo/__init__.py") == b"x = 1\n"
    assert names == {"demo/__init__.py", "demo-1.0.dist-info/METADATA", "demo-1.0.dist-info/RECORD"}
    assert set(record) == names - {"demo-1.0.dist-info/RECORD"}


def test_plan_mode_prints_the_plan_and_touches_nothing(tmp_path):
    out = tmp_path / "bundle"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_bundle.py"), "--plan", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "unsloth==2026.10.9 (pruned)" in done.stdout and "size budget:" in done.stdout
    assert not out.exists()


# ----------------------------------------------------------------------------------------------- run.sh
def run_sh_number(name: str) -> int:
    match = re.search(rf"^{name}=(\d+)", RUN_SH.read_text(encoding="utf-8"), flags=re.M)
    assert match, name
    return int(match.group(1))


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_run_sh_parses():
    done = subprocess.run(["bash", "-n", str(RUN_SH)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_run_sh_runs_the_default_stages_in_value_order(check):
    stages = re.search(r"STAGES=\$\{STAGES:-([a-z_,]+)\}", RUN_SH.read_text(encoding="utf-8"))
    assert stages and stages.group(1).split(",") == list(check.DEFAULT_STAGES)
    assert list(check.DEFAULT_STAGES)[:4] == ["labels", "unsloth_train", "transformers", "medqa"]


def test_every_cap_fits_in_run_sh_and_a_run_fits_twice_in_fifteen_minutes(check):
    stages = sum(check.STAGE_CAP_S[s] for s in check.DEFAULT_STAGES)
    assert stages + check.SETUP_CAP_S <= check.RUN_BUDGET_S
    assert run_sh_number("CHECK_CAP_S") >= check.RUN_BUDGET_S + check.PROCESS_SLACK_S
    worst = run_sh_number("UNPACK_CAP_S") + run_sh_number("ENV_CAP_S") + run_sh_number("CHECK_CAP_S")
    assert worst <= 8 * 60 and 2 * worst <= 15 * 60


# ----------------------------------------------------------------------------------------------- gpu_check
def test_stages_come_in_value_order_whatever_order_they_are_asked_in(check):
    assert check.parse_stages("validation,medqa,labels") == ["labels", "medqa", "validation"]
    assert check.parse_stages("unsloth") == list(check.IN_PROCESS)
    with pytest.raises(ValueError, match="unknown stage"):
        check.parse_stages("medqa,nope")


def test_caps_can_be_changed_per_stage(check):
    caps = check.parse_caps("medqa=90, unsloth_train=150")
    assert caps["medqa"] == 90 and caps["unsloth_train"] == 150 and caps["gguf"] == check.STAGE_CAP_S["gguf"]
    with pytest.raises(ValueError, match="stage=seconds"):
        check.parse_caps("medqa=soon")


def test_an_inner_time_cap_stops_its_block_and_the_outer_one_goes_on(check):
    started = time.monotonic()
    with check.time_cap(5) as outer:
        try:
            with check.time_cap(0.2) as inner:
                while True:
                    time.sleep(0.01)
        except check.StageTimeout as err:
            assert err.cap is inner and err.cap is not outer
        time.sleep(0.3)  # the outer cap is still armed and has not fired
    assert time.monotonic() - started < 2


def test_a_time_cap_is_not_swallowed_by_code_that_catches_exceptions(check):
    def stubborn() -> None:
        until = time.monotonic() + 3  # a swallowed cap makes the test fail, not hang
        while time.monotonic() < until:
            with contextlib.suppress(Exception):  # library code that catches everything but BaseException
                time.sleep(0.01)

    result = check.run_capped("demo", lambda result: stubborn(), 0.2)
    assert result["timed_out"] and not result["ok"] and result["seconds"] < 2


def test_a_stage_that_fails_keeps_what_it_measured(check):
    def work(result: dict) -> None:
        result["tokens_per_second"] = 123.0
        raise RuntimeError("boom")

    result = check.run_capped("demo", work, 5)
    assert result["tokens_per_second"] == 123.0 and "boom" in result["error"] and not result["ok"]


def test_each_stage_result_is_written_as_it_ends(check, tmp_path):
    results = tmp_path / "stages.jsonl"
    check.report(tmp_path, results, "labels", {"ok": True, "labels_match": True})
    check.report(tmp_path, results, "unsloth_train", {"ok": False, "timed_out": True})
    with open(results, "a", encoding="utf-8") as handle:
        handle.write('{"stage": "medqa", "ok"')  # a line cut short when the process was killed
    found = check.reported(results)
    assert list(found) == ["labels", "unsloth_train"]
    assert (tmp_path / "stages" / "labels.json").is_file()
