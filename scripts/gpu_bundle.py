"""Build `.gpu/`, the bundle a lent GPU machine needs to run medsft's GPU checks (`scripts/gpu_check.py`).

    python scripts/gpu_bundle.py          # on a CPU machine with PyPI, after `make setup` (or: make gpu-bundle)
    python scripts/gpu_bundle.py --plan   # what it would fetch and the size budget; no network, nothing written
    bash .gpu/run.sh                      # then, on the GPU machine, from the repository root

The GPU machine has Python 3.12 with torch 2.11 (CUDA 13.0), transformers 5.17 and accelerate 1.15 installed, no
network, and receives at most 64 MiB (the repository's tracked files included). The bundle holds only what that
image lacks, and stays under `LIMIT_MIB`:

- `wheels/`: the packages the stages import that the image lacks or has at another version, at the versions
  `requirements.txt` pins (`EXTRA_PINS` for the few it does not list), for CPython 3.12 manylinux x86_64.
  Two are pruned, with their RECORD rewritten: unsloth without `studio/` and `unsloth_cli/` (its web app and
  CLI, which the library never imports: 27.3 MiB -> 1.8 MiB) and bitsandbytes with only its CUDA 13.0 and CPU
  libraries (it loads the one matching torch's CUDA; the others are for CUDA 11.8-13.2, ROCm and XPU:
  41.1 MiB -> 3.4 MiB). Optional extras Unsloth lists but this path never imports stay out (`NOT_CARRIED`).
- `llama.cpp.tar.xz`: the converter part of the cached llama.cpp toolchain (`convert_hf_to_gguf.py`,
  `conversion/`, `gguf-py/`, and the empty `src/ ggml/ common/` that Unsloth's integrity check looks for) and
  the llama-cpp-python runtime `make setup` built here (portable, `GGML_NATIVE=OFF`; it needs glibc 2.29 and
  libstdc++ 3.4.29, older than the GPU image's Ubuntu 24.04), each shared library stored once, plus libgomp as
  a fallback. Built here rather than there: compiling llama.cpp would cost minutes of a 15-minute lease, and
  `llama-quantize` is medsft's Python front end to that library (`medsft.export.llamacpp_toolchain`), rewritten for
  the GPU machine's interpreter when the toolchain is first looked up there.
- `models.tar.xz`: Gemma 3 270M's config and tokenizer; the random weights are made on the GPU machine.
- `run.sh` (from `scripts/gpu_run.sh`) and `MANIFEST.json` (every file, its size and sha256, the plan).

It prints the bundle's size and exits 1 if the bundle exceeds `LIMIT_MIB`, or if it and the repository's
tracked files together exceed the 64 MiB a lent machine receives. The planning part (`plan_bundle`,
`check_size`, `pip_download_command`) is pure: the tests run it with no network.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN_SCRIPT = ROOT / "scripts" / "gpu_run.sh"
LIMIT_MIB = 60.0  # the bundle alone
TRANSFER_LIMIT_MIB = 64.0  # what a lent machine receives: the bundle and the repository's tracked files

# The GPU machine's image (/work/.library/device/KINDS.md, read 2026-11; peft as the H200 run reported it).
GPU_PYTHON = "3.12"
GPU_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
GPU_CUDA = "130"  # torch 2.11.0+cu130: bitsandbytes loads libbitsandbytes_cuda130.so
GPU_IMAGE = {
    "torch": "2.11.0",
    "transformers": "5.17.0",
    "accelerate": "1.15.0",
    "peft": "0.21.0",
    "huggingface-hub": "1.33.0",
    "tokenizers": "0.23.2",
    "safetensors": "0.8.0",
    "numpy": "2.5.2",
    "triton": "3.6.0",
    "sentencepiece": "0.2.2",
    "torchvision": "0.26.0",
}

# What gpu_check's stages import, pinned by requirements.txt; each is carried unless the image has that version.
STAGE_PACKAGES = ("unsloth", "unsloth-zoo", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes")
# Needed on that path, missing from the image, not pinned by requirements.txt: pinned here.
EXTRA_PINS = {
    "cut-cross-entropy": ("25.1.1", "unsloth_zoo's fused loss; without it Unsloth trains on a slower loss"),
    "dill": ("0.4.1", "datasets (needs <0.4.2)"),
    "multiprocess": ("0.70.19", "datasets (needs <0.70.20)"),
    "fsspec": ("2026.2.0", "datasets 4.8.5 needs fsspec<=2026.2.0; the image's may be newer"),
    "diskcache": ("5.6.3", "llama-cpp-python's runtime (the CPU set-up's pin)"),
}
# Requirements of unsloth / unsloth_zoo that the image lacks and this path never imports (each import is optional
# or in code the checks do not reach), left out to keep within the size limit.
NOT_CARRIED = {
    "xformers": "optional attention kernels (100+ MiB); Unsloth uses PyTorch SDPA without them",
    "torchao": "QAT and fp8 only, imported inside try blocks",
    "hf-transfer": "faster hub downloads, not imported; there is no network",
    "diffusers": "diffusion models",
    "tyro": "not imported by unsloth or unsloth_zoo (a CLI helper)",
    "msgspec": "vLLM LoRA requests",
    "pydantic": "warning filter inside a try block; Unsloth Studio",
    "json5": "Unsloth Studio",
    "structlog": "Unsloth Studio",
    "nest-asyncio": "OpenEnv notebooks, imported inside a try block",
}
# Most each part may take (MiB), from the files as built on 2026-12-06 with room to grow; the plan is checked
# against LIMIT_MIB with these before anything is downloaded.
BUDGET_MIB = {
    "unsloth": 4.0,
    "unsloth-zoo": 4.0,
    "trl": 1.5,
    "peft": 1.5,
    "datasets": 1.0,
    "bitsandbytes": 4.0,
    "transformers": 14.0,
    "accelerate": 1.0,
    "cut-cross-entropy": 0.25,
    "dill": 0.25,
    "multiprocess": 0.25,
    "fsspec": 0.5,
    "diskcache": 0.25,
    "llama.cpp.tar.xz": 6.0,
    "models.tar.xz": 5.0,
    "run.sh": 0.05,
    "MANIFEST.json": 0.05,
}

# llama.cpp: what the GPU machine needs of the toolchain folder, and of the runtime wheel.
LLAMA_CPP_TREE = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")
LLAMA_CPP_EMPTY_DIRS = ("src", "ggml", "common")  # unsloth_zoo.llama_cpp: "a source checkout has src/ggml/common"
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
MODEL_NAME = "gemma-3-270m"


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (`unsloth_zoo` = `Unsloth-Zoo` = `unsloth-zoo`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def drop_unsloth(path: str) -> bool:
    """Unsloth Studio (a web app) and the CLI: nothing the library imports."""
    return path.startswith(("studio/", "unsloth_cli/"))


def drop_bitsandbytes(path: str) -> bool:
    """Native libraries for other CUDA, ROCm and XPU versions; the CUDA 13.0 and CPU ones stay."""
    match = re.fullmatch(r"bitsandbytes/libbitsandbytes_(\w+)\.(so|dll|dylib)", path)
    return match is not None and match.group(1) not in (f"cuda{GPU_CUDA}", "cpu")


PRUNE: dict[str, Callable[[str], bool]] = {"unsloth": drop_unsloth, "bitsandbytes": drop_bitsandbytes}


@dataclass(frozen=True)
class WheelPlan:
    name: str  # canonical distribution name
    version: str
    why: str
    budget_mib: float
    pruned: bool = False


@dataclass
class Plan:
    wheels: list[WheelPlan]
    not_carried: dict[str, str]  # name -> why it stays behind
    archives: dict[str, list[str]] = field(default_factory=dict)  # archive -> what goes in
    budget_mib: dict[str, float] = field(default_factory=dict)  # every part of the bundle -> its most

    @property
    def total_budget_mib(self) -> float:
        return round(sum(self.budget_mib.values()), 2)


def requirement_pins(text: str) -> dict[str, str]:
    """`name==version` lines of a requirements file (comments, options and unpinned names skipped)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def plan_bundle(requirements: str, image: dict[str, str] | None = None) -> Plan:
    """What the bundle carries, and each part's size budget: pure, no network, no file read."""
    image = {canonical(k): v for k, v in (GPU_IMAGE if image is None else image).items()}
    pins = requirement_pins(requirements)
    missing = [name for name in STAGE_PACKAGES if name not in pins]
    if missing:
        raise ValueError(f"requirements.txt pins no version of {', '.join(missing)}, which the GPU stages import")
    wheels: list[WheelPlan] = []
    skipped: dict[str, str] = {}
    for name in STAGE_PACKAGES:
        there = image.get(name)
        if there == pins[name]:
            skipped[name] = f"the GPU image has {name} {there}, the pinned version"
            continue
        why = f"the GPU image has {there}, requirements.txt pins {pins[name]}" if there else "not in the GPU image"
        wheels.append(WheelPlan(name, pins[name], why, BUDGET_MIB.get(name, 1.0), name in PRUNE))
    for name, (version, why) in EXTRA_PINS.items():
        wheels.append(WheelPlan(name, version, why, BUDGET_MIB.get(name, 1.0), name in PRUNE))
    skipped.update(NOT_CARRIED)
    archives = {
        "llama.cpp.tar.xz": [
            *(f"llama.cpp/{p}" for p in LLAMA_CPP_TREE),
            *(f"llama.cpp/{d}/" for d in LLAMA_CPP_EMPTY_DIRS),
        ]
        + [
            "llama-cpp-python/llama_cpp/",
            "llama-cpp-python/*.dist-info/",
            "llama-cpp-python/fallback-lib/libgomp.so.1",
        ],
        "models.tar.xz": [f"models/{MODEL_NAME}/{f}" for f in MODEL_FILES],
    }
    budget = {f"wheels/{w.name}": w.budget_mib for w in wheels}
    budget.update({name: BUDGET_MIB[name] for name in ("llama.cpp.tar.xz", "models.tar.xz", "run.sh", "MANIFEST.json")})
    return Plan(wheels, skipped, archives, budget)


def check_size(sizes: dict[str, int | float], limit_mib: float, what: str = "the bundle") -> float:
    """Total MiB of `sizes` (bytes per part); a ValueError naming the largest parts if over `limit_mib`."""
    total = sum(sizes.values()) / 2**20
    if total > limit_mib:
        largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
        listed = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in largest)
        raise ValueError(f"{what} is {total:.1f} MiB, over its {limit_mib:g} MiB limit; largest: {listed}")
    return round(total, 2)


def pip_download_command(name: str, version: str, dest: Path, python: str = sys.executable) -> list[str]:
    """pip's download of one wheel for the GPU machine: binary only, its Python and platforms, no dependencies."""
    command = [python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    command += ["--only-binary=:all:", "--python-version", GPU_PYTHON, "--implementation", "cp"]
    for platform in GPU_PLATFORMS:
        command += ["--platform", platform]
    return [*command, "--dest", str(dest), f"{name}=={version}"]


# ------------------------------------------------------------------------------------------------ building
def wheel_identity(path: Path) -> tuple[str, str]:
    """(canonical name, version) from a wheel's file name."""
    name, version = path.name.split("-")[:2]
    return canonical(name), version


def fetch_wheel(wheel: WheelPlan, cache: Path) -> Path:
    """The wheel from the cache, downloaded from PyPI on first use."""
    cache.mkdir(parents=True, exist_ok=True)

    def cached() -> Path | None:
        found = [p for p in cache.glob("*.whl") if wheel_identity(p) == (wheel.name, wheel.version)]
        return found[0] if found else None

    if cached() is None:
        print(f"  downloading {wheel.name}=={wheel.version}", flush=True)
        subprocess.run(pip_download_command(wheel.name, wheel.version, cache), check=True)
    path = cached()
    if path is None:
        raise RuntimeError(f"pip downloaded no wheel named {wheel.name} {wheel.version} into {cache}")
    return path


def prune_wheel(source: Path, target: Path, drop: Callable[[str], bool]) -> list[str]:
    """Copy a wheel without the files `drop` selects, its RECORD rewritten to match; returns what was dropped."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as new:
        record = next(n for n in old.namelist() if n.endswith(".dist-info/RECORD"))
        dropped = [n for n in old.namelist() if drop(n)]
        gone = set(dropped)
        for info in old.infolist():
            if info.filename not in gone and info.filename != record:
                new.writestr(info, old.read(info), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        rows = [row for row in csv.reader(io.StringIO(old.read(record).decode())) if row and row[0] not in gone]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        new.writestr(record, buffer.getvalue())
    return dropped


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def add_entry(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.linkname = kind, 0o755, int(time.time()), linkname
    tar.addfile(info)


def no_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "__pycache__" in info.name or info.name.endswith(".pyc") else info


def build_llama_archive(tree: Path, runtime_wheel: Path, target: Path) -> list[str]:
    """The converter part of the toolchain folder and the runtime, libraries stored once (symlinks for the
    other names a wheel has to store as copies), libgomp as a fallback for an image without it."""
    notes = []
    with tarfile.open(target, "w:xz", preset=9) as tar:
        for part in LLAMA_CPP_TREE:
            tar.add(tree / part, arcname=f"llama.cpp/{part}", filter=no_caches)
        for folder in LLAMA_CPP_EMPTY_DIRS:
            add_entry(tar, f"llama.cpp/{folder}", tarfile.DIRTYPE)
        with zipfile.ZipFile(runtime_wheel) as wheel:
            stored: dict[str, str] = {}  # sha256 -> the name stored
            # the longest name of a library first (libggml.so.0.25.3): the real file, the shorter ones link to it
            names = sorted(wheel.namelist(), key=lambda n: (n.split("/")[0], -len(n)))
            for name in names:
                if not (name.startswith("llama_cpp/") or ".dist-info/" in name) or name.endswith("/"):
                    continue  # the wheel's top-level lib/ and include/ are CMake's install, unused by the package
                data = wheel.read(name)
                digest = hashlib.sha256(data).hexdigest()
                arcname = f"llama-cpp-python/{name}"
                if name.endswith(".so") or ".so." in name:
                    if digest in stored:
                        add_entry(tar, arcname, tarfile.SYMTYPE, Path(stored[digest]).name)
                        continue
                    stored[digest] = name
                    add_bytes(tar, arcname, data, 0o755)
                else:
                    add_bytes(tar, arcname, data)
            notes.append(f"{len(stored)} shared libraries")
        gomp = find_libgomp()
        if gomp is not None:
            add_bytes(tar, "llama-cpp-python/fallback-lib/libgomp.so.1", gomp.read_bytes(), 0o755)
        else:
            notes.append("no libgomp.so.1 found here to carry as a fallback")
    return notes


def find_libgomp() -> Path | None:
    for folder in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        path = Path(folder) / "libgomp.so.1"
        if path.exists():
            return path.resolve()
    return None


def build_models_archive(source: Path, target: Path) -> list[str]:
    taken = [name for name in MODEL_FILES if (source / name).is_file()]
    if "config.json" not in taken or "tokenizer.json" not in taken:
        raise FileNotFoundError(f"{source} lacks config.json or tokenizer.json")
    with tarfile.open(target, "w:xz", preset=9) as tar:
        for name in taken:
            tar.add(source / name, arcname=f"models/{MODEL_NAME}/{name}")
    return taken


def tracked_bytes(root: Path) -> int:
    """Bytes of the repository's tracked files, which travel to the GPU machine with the bundle."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    paths = (root / p for p in listed.decode().split("\0") if p)
    return sum(p.stat().st_size for p in paths if p.is_file())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(plan: Plan, out: Path, cache: Path) -> dict[str, Any]:
    """Fetch, prune and pack into a temporary folder beside `out`, then put it in `out`'s place."""
    from medsft.export.llamacpp_toolchain import ToolchainError, cached_wheel, find_toolchain, setup_toolchain
    from medsft.models import resolve_model

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        notes: dict[str, Any] = {}
        (staging / "wheels").mkdir()
        print("wheels:", flush=True)
        for wheel in plan.wheels:
            source = fetch_wheel(wheel, cache)
            target = staging / "wheels" / source.name
            if wheel.pruned:
                dropped = prune_wheel(source, target, PRUNE[wheel.name])
                notes[wheel.name] = f"pruned {len(dropped)} files ({source.stat().st_size / 2**20:.1f} MiB before)"
            else:
                shutil.copy(source, target)
            print(f"  {target.name}: {target.stat().st_size / 2**20:.2f} MiB", flush=True)
        try:
            toolchain = find_toolchain()
        except ToolchainError:
            toolchain = setup_toolchain()  # a fresh clone without `make setup`: builds it (minutes)
        runtime = cached_wheel()
        if runtime is None:
            raise RuntimeError(
                "no llama-cpp-python wheel in the cache; run `python -m medsft.export.llamacpp_toolchain setup`"
            )
        print(f"llama.cpp: {toolchain.root} and {runtime.name}", flush=True)
        notes["llama.cpp"] = build_llama_archive(toolchain.root, runtime, staging / "llama.cpp.tar.xz")
        model = Path(resolve_model("embedded").location)
        print(f"models: config and tokenizer of {model}", flush=True)
        notes["models"] = build_models_archive(model, staging / "models.tar.xz")
        shutil.copy(RUN_SCRIPT, staging / "run.sh")
        (staging / "run.sh").chmod(0o755)
        files = {str(p.relative_to(staging)): p for p in sorted(staging.rglob("*")) if p.is_file()}
        manifest = {
            "built": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "limit_mib": LIMIT_MIB,
            "plan": {"wheels": [asdict(w) for w in plan.wheels], "not_carried": plan.not_carried},
            "notes": notes,
            "files": {name: {"bytes": p.stat().st_size, "sha256": sha256(p)} for name, p in files.items()},
        }
        (staging / "MANIFEST.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def print_plan(plan: Plan) -> None:
    print("wheels (CPython 3.12, manylinux x86_64):")
    for wheel in plan.wheels:
        pruned = " (pruned)" if wheel.pruned else ""
        print(f"  {wheel.name}=={wheel.version}{pruned}: {wheel.why}; at most {wheel.budget_mib:g} MiB")
    print("not carried:")
    for name, why in plan.not_carried.items():
        print(f"  {name}: {why}")
    for archive, parts in plan.archives.items():
        print(f"{archive}: {', '.join(parts)}")
    print(f"size budget: {plan.total_budget_mib:g} MiB of the {LIMIT_MIB:g} MiB limit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu", help="the bundle folder (default .gpu)")
    parser.add_argument("--plan", action="store_true", help="print what would be fetched and the budget, then stop")
    parser.add_argument("--cache", type=Path, help="downloaded wheels (default: medsft's cache, gpu-wheels/)")
    args = parser.parse_args(argv)
    plan = plan_bundle((ROOT / "requirements.txt").read_text(encoding="utf-8"))
    check_size({k: v * 2**20 for k, v in plan.budget_mib.items()}, LIMIT_MIB, "the planned bundle")
    print_plan(plan)
    if args.plan:
        return 0
    sys.path.insert(0, str(ROOT))  # medsft, when run as a script from a checkout
    from medsft.models import cache_dir

    manifest = build(plan, args.out, args.cache or cache_dir() / "gpu-wheels")
    sizes = {name: entry["bytes"] for name, entry in manifest["files"].items()}
    tree = tracked_bytes(ROOT)
    try:
        total = check_size(sizes, LIMIT_MIB)
        print(f"bundle: {args.out}, {len(sizes)} files, {total:.2f} MiB (limit {LIMIT_MIB:g} MiB)")
        both = check_size({**sizes, "tracked files": tree}, TRANSFER_LIMIT_MIB, "the bundle with the tracked files")
        print(f"with the repository's tracked files ({tree / 2**20:.2f} MiB): {both:.2f} MiB of {TRANSFER_LIMIT_MIB:g}")
    except ValueError as err:
        print(f"gpu_bundle: {err}", file=sys.stderr)
        return 1
    print('on the GPU machine, from the repository root: bash .gpu/run.sh  (device tool: carry [".gpu"])')
    return 0


if __name__ == "__main__":
    sys.exit(main())
