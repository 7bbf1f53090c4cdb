"""The llama.cpp toolchain, from PyPI only, built once and cached: converter, quantizer, runtime.

`python -m medsft.export.llamacpp_toolchain setup` (`make setup`); what it builds and why: docs/export.md."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

from medsft.models import cache_dir

log = logging.getLogger("medsft")

VERSION = "0.3.36"
# Portable, no multimodal library, no OpenMP (under medsft's OMP_WAIT_POLICY=PASSIVE it ran Q8_0 at 36-39 tok/s
# instead of 59-64): docs/export.md, "The build".
CMAKE_ARGS = "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DGGML_OPENMP=OFF"
TOOLCHAIN_ENV = "MEDSFT_LLAMA_CPP"
QUANTIZE_TOOL = "llama-quantize"
CONVERTER = "convert_hf_to_gguf.py"

# The file types llama-quantize knows by name (llama.h `llama_ftype`), for the ones medsft offers.
FTYPES = {"F16": 1, "BF16": 32, "Q8_0": 7, "Q5_K_M": 17, "Q4_K_M": 15}

QUANTIZE_SCRIPT = '''#!{python}
"""llama-quantize IN.gguf OUT.gguf TYPE [THREADS]: libllama's llama_model_quantize (written by medsft)."""
import ctypes
import sys

FTYPES = {ftypes!r}
USAGE = "usage: llama-quantize [--allow-requantize] IN.gguf OUT.gguf TYPE [THREADS]\\nTYPE: " + ", ".join(FTYPES)

args = sys.argv[1:]
if not args or args[0] in ("-h", "--help"):
    print(USAGE)
    sys.exit(0 if args else 1)
allow_requantize = "--allow-requantize" in args
args = [a for a in args if a != "--allow-requantize"]
if len(args) not in (3, 4) or args[2].upper() not in FTYPES:
    print(USAGE, file=sys.stderr)
    sys.exit(1)
import llama_cpp

params = llama_cpp.llama_model_quantize_default_params()
params.ftype = FTYPES[args[2].upper()]
params.nthread = int(args[3]) if len(args) == 4 else 0
params.allow_requantize = allow_requantize
status = llama_cpp.llama_model_quantize(args[0].encode(), args[1].encode(), ctypes.byref(params))
if status != 0:
    print(f"llama-quantize: llama_model_quantize failed with status {{status}}", file=sys.stderr)
sys.exit(1 if status else 0)
'''


class ToolchainError(RuntimeError):
    """The llama.cpp toolchain or runtime is missing or broken; the message says how to set it up."""


@dataclass(frozen=True)
class Toolchain:
    root: Path

    @property
    def converter(self) -> Path:
        return self.root / CONVERTER

    @property
    def quantize_tool(self) -> Path:
        return self.root / QUANTIZE_TOOL

    def unsloth_environment(self) -> dict[str, str]:
        """What Unsloth's GGUF export needs to use this folder instead of cloning llama.cpp."""
        return {"UNSLOTH_LLAMA_CPP_PATH": str(self.root), "UNSLOTH_LLAMA_CPP_OFFLINE": "1", "UNSLOTH_AUTO_INSTALL": "0"}


SETUP_HINT = "run `python -m medsft.export.llamacpp_toolchain setup` once (it needs PyPI only when its cache is empty)"


def toolchain_root() -> Path:
    return Path(os.environ.get(TOOLCHAIN_ENV) or cache_dir() / "llama.cpp" / VERSION)


def build_key() -> str:
    """The version and a digest of the build flags: new flags mean a new build."""
    return f"{VERSION}-{hashlib.sha256(CMAKE_ARGS.encode()).hexdigest()[:8]}"


def wheel_dir() -> Path:
    return cache_dir() / "wheels" / build_key()


def cached_wheel() -> Path | None:
    return max(wheel_dir().glob(f"llama_cpp_python-{VERSION}-*.whl"), default=None)


def installed_wheel() -> str | None:
    """Where the installed llama-cpp-python came from (pip's direct_url.json), or None."""
    try:
        text = distribution("llama_cpp_python").read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    return json.loads(text).get("url") if text else None


def runtime_is_current() -> bool:
    """The installed runtime is this version, installed from a wheel of this build key (today's CMAKE_ARGS)."""
    return runtime_version() == VERSION and f"/{build_key()}/" in (installed_wheel() or "")


def runtime_version() -> str | None:
    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return None


def check_runtime_threads() -> None:
    """Warn (once) when llama.cpp was built with OpenMP (an older wheel) and OMP_WAIT_POLICY is PASSIVE."""
    global _threads_checked
    if _threads_checked or os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        return
    _threads_checked = True
    import llama_cpp

    if "OPENMP = 1" in llama_cpp.llama_print_system_info().decode("utf-8", "replace"):
        log.warning(
            "llama.cpp here was built with OpenMP and OMP_WAIT_POLICY=PASSIVE is set: generation runs ~40%% slower; "
            "rebuild it without OpenMP with `make setup` (or %s)",
            SETUP_HINT.split(" once")[0].removeprefix("run "),
        )


_threads_checked = False


def default_threads() -> int:
    """The OMP_NUM_THREADS budget when set (no-OpenMP threads spin, and collapse on shared cores), else every core."""
    budget = os.environ.get("OMP_NUM_THREADS", "")
    return int(budget) if budget.isdigit() and int(budget) > 0 else len(os.sched_getaffinity(0))


def find_toolchain() -> Toolchain:
    """The ready toolchain folder, or a `ToolchainError` saying what is missing and what to run."""
    chain = Toolchain(toolchain_root())
    missing = [p.name for p in (chain.converter, chain.root / "conversion", chain.root / "gguf-py") if not p.exists()]
    if missing:
        raise ToolchainError(
            f"llama.cpp toolchain not found in {chain.root} (missing {', '.join(missing)}); {SETUP_HINT}"
        )
    if runtime_version() is None:
        raise ToolchainError(f"llama-cpp-python is not installed in {sys.prefix}; {SETUP_HINT}")
    write_quantize_tool(chain.root)  # points at this interpreter, which has the runtime
    return chain


def write_quantize_tool(root: Path) -> None:
    """(Re)write `llama-quantize` for the current interpreter (its shebang)."""
    text = QUANTIZE_SCRIPT.format(python=sys.executable, ftypes=FTYPES)
    path = root / QUANTIZE_TOOL
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_name(f".{QUANTIZE_TOOL}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        tmp.replace(path)


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    log.info("running %s", " ".join(command))
    subprocess.run(command, check=True, env=env)


def fetch_sdist() -> Path:
    path = cache_dir() / "sdist" / f"llama_cpp_python-{VERSION}.tar.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            pip("download", "--quiet", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={VERSION}", "-d", tmp)
            (Path(tmp) / path.name).replace(path)
    return path


def build_wheel(sdist: Path) -> Path:
    """Build the portable wheel once; later calls return the cached file."""
    if (wheel := cached_wheel()) is not None:
        return wheel
    folder = wheel_dir()
    folder.mkdir(parents=True, exist_ok=True)
    print(f"building llama-cpp-python {VERSION} once (about 7-25 minutes on 2 cores); cached in {folder}")
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        pip("wheel", "--quiet", "--no-deps", str(sdist), "-w", tmp, env={**os.environ, "CMAKE_ARGS": CMAKE_ARGS})
        (built,) = Path(tmp).glob("llama_cpp_python-*.whl")
        built.replace(folder / built.name)
    return folder / built.name


def unpack_tree(sdist: Path, root: Path) -> None:
    """Extract the vendored llama.cpp tree into `root` (through a temporary sibling)."""
    if (root / CONVERTER).exists():
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp, tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            if member.name.startswith(prefix) and member.name != prefix and (member.isfile() or member.isdir()):
                member.name = member.name[len(prefix) :]
                members.append(member)
        staged = Path(tmp) / "tree"
        staged.mkdir()
        archive.extractall(staged, members=members, filter="data")
        staged.rename(root)


def setup_toolchain() -> Toolchain:
    """Download, build, install and unpack (each if needed): afterwards everything works offline."""
    sdist = fetch_sdist()
    wheel = build_wheel(sdist)
    if not runtime_is_current():
        # --force-reinstall: an older build of the same version (other flags) is replaced, not kept as "satisfied".
        pip("install", "--quiet", "--no-deps", "--force-reinstall", str(wheel))
        pip("install", "--quiet", "--no-deps", "diskcache")
    unpack_tree(sdist, toolchain_root())
    chain = find_toolchain()
    log.info("llama.cpp toolchain ready in %s", chain.root)
    return chain


def check_disk(folder: Path, needed_bytes: int, what: str) -> None:
    """Refuse early, before minutes of work, when a write cannot fit."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise OSError(
            f"not enough disk for {what} in {folder}: needs about {needed_bytes / 2**30:.1f} GiB, "
            f"{free / 2**30:.1f} GiB free; free some space or set output_dir to a larger disk"
        )


def main(argv: list[str] | None = None) -> int:
    import argparse

    description = __doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m medsft.export.llamacpp_toolchain", description=description)
    parser.add_argument("command", choices=["setup", "where"], help="setup: build/install once; where: print paths")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        chain = setup_toolchain() if args.command == "setup" else find_toolchain()
    except ToolchainError as err:
        print(f"medsft: {err}", file=sys.stderr)
        return 2
    print(f"toolchain: {chain.root}\nruntime: llama-cpp-python {runtime_version()} in {sys.prefix}")
    for key, value in chain.unsloth_environment().items():
        print(f"export {key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
