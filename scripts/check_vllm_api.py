"""Check every vLLM call medsft makes (medsft/evaluate/vllm_scorer.py) against a vLLM release's source.

    python scripts/check_vllm_api.py --wheel vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl \
        > scripts/check_vllm_api.out.txt

vLLM has no CPU wheel and importing it needs its CUDA torch, so nothing is imported from it: the release's
source is parsed (from `--wheel`, or the installed package when there is one). What medsft passes is taken
from the functions that build it (`engine_arguments`, `sampling_arguments`, `SCORING_ARGUMENTS`), so the
checks follow medsft's code. Prints one line per check (`ok`, `FAIL`, or `note` for information) and exits 1
if any check fails. Get the wheel with `pip download vllm==0.33.0 --no-deps`.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from medsft.config import DTYPES  # noqa: E402
from medsft.evaluate.transformers_scorer import GenerationSettings  # noqa: E402
from medsft.evaluate.vllm_scorer import (  # noqa: E402
    LORA_RANK_SLOTS,
    SCORING_ARGUMENTS,
    engine_arguments,
    sampling_arguments,
)

# The GPU pins in requirements.txt that vLLM must install beside.
UNSLOTH_TORCH_BELOW = (2, 15)
TRANSFORMERS_PIN = "5.17.0"
RECIPE_ARCHITECTURES = ("Gemma3ForCausalLM", "LlamaForCausalLM")  # the text-only recipes' checkpoints


class Source:
    """vLLM's Python files and metadata, from a wheel or an installed package."""

    def __init__(self, wheel: Path | None) -> None:
        if wheel is not None:
            self.archive = zipfile.ZipFile(wheel)
            self.label = wheel.name
        else:
            spec = importlib.util.find_spec("vllm")
            if spec is None or not spec.submodule_search_locations:
                raise SystemExit("vllm is not installed; pass --wheel (pip download vllm==0.33.0 --no-deps)")
            self.root = Path(next(iter(spec.submodule_search_locations))).parent
            self.archive = None
            self.label = str(self.root)

    def text(self, path: str) -> str:
        if self.archive is not None:
            return self.archive.read(path).decode("utf-8")
        return (self.root / path).read_text(encoding="utf-8")

    def metadata(self) -> str:
        if self.archive is not None:
            name = next(n for n in self.archive.namelist() if n.endswith(".dist-info/METADATA"))
            return self.text(name)
        return next(self.root.glob("vllm-*.dist-info/METADATA")).read_text(encoding="utf-8")

    def class_node(self, path: str, name: str) -> ast.ClassDef:
        tree = ast.parse(self.text(path))
        return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def fields(node: ast.ClassDef) -> set[str]:
    """Annotated class-level names: the fields of a dataclass, msgspec.Struct or TypedDict."""
    return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}


def parameters(node: ast.ClassDef, method: str) -> tuple[list[str], bool]:
    """A method's parameter names, and whether it takes **kwargs."""
    func = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == method)
    args = func.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return names, args.kwarg is not None


def field_default(node: ast.ClassDef, name: str) -> Any:
    statement = next(s for s in node.body if isinstance(s, ast.AnnAssign) and getattr(s.target, "id", "") == name)
    return ast.literal_eval(statement.value) if statement.value is not None else None


def literal_values(path_text: str, alias: str) -> tuple[Any, ...]:
    """The values of `alias = Literal[...]` in a module."""
    for node in ast.parse(path_text).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == alias for t in node.targets):
            return tuple(ast.literal_eval(e) for e in node.value.slice.elts)
    raise LookupError(alias)


def medsft_arguments() -> tuple[dict[str, Any], dict[str, Any]]:
    """What medsft passes to `LLM(...)` for an adapter (every optional argument) and to `SamplingParams(...)`."""
    from medsft.config import build_config

    with tempfile.TemporaryDirectory() as folder:
        base, adapter = Path(folder) / "base", Path(folder) / "adapter"
        base.mkdir()
        adapter.mkdir()
        (base / "config.json").write_text("{}", encoding="utf-8")
        (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 16}))
        engine, _ = engine_arguments(str(adapter), build_config({"model": str(adapter)}))
    sampling = sampling_arguments(GenerationSettings(do_sample=True), 0, [1])
    return engine, sampling


def run_checks(source: Source) -> list[tuple[bool | None, str, str]]:
    results: list[tuple[bool | None, str, str]] = []

    def check(ok: bool | None, name: str, detail: str) -> None:
        results.append((ok, name, detail))

    engine, sampling = medsft_arguments()
    llm = source.class_node("vllm/entrypoints/llm.py", "LLM")
    init, takes_kwargs = parameters(llm, "__init__")
    engine_fields = fields(source.class_node("vllm/engine/arg_utils.py", "EngineArgs"))
    for key in sorted(engine):
        where = "LLM.__init__" if key in init else "EngineArgs (through **kwargs)" if takes_kwargs else None
        ok = key in init or (takes_kwargs and key in engine_fields)
        check(ok, f"LLM({key}=...)", f"accepted by {where}" if ok else "neither LLM.__init__ nor EngineArgs has it")

    dtypes = literal_values(source.text("vllm/config/model.py"), "ModelDType")
    missing = [d for d in DTYPES if d not in dtypes]
    check(not missing, "LLM(dtype=...) values", f"medsft's {list(DTYPES)} in vLLM's {list(dtypes)}; missing {missing}")

    generate, _ = parameters(llm, "generate")
    used = ("prompts", "sampling_params", "use_tqdm", "lora_request")
    missing = [p for p in used if p not in generate]
    check(not missing, "LLM.generate(...)", f"takes {list(used)}; missing {missing}")

    sampling_fields = fields(source.class_node("vllm/sampling_params.py", "SamplingParams"))
    for key in sorted(set(sampling) | set(SCORING_ARGUMENTS)):
        check(key in sampling_fields, f"SamplingParams({key}=...)", "a field" if key in sampling_fields else "no field")
    sampling_node = source.class_node("vllm/sampling_params.py", "SamplingParams")
    top_k = field_default(sampling_node, "top_k")
    check(top_k == 0, "SamplingParams.top_k", f"default {top_k}; medsft passes 0 for all tokens")
    prefix_skip = "self.skip_reading_prefix_cache = (\n                self.prompt_logprobs is not None"
    check(
        prefix_skip in source.text("vllm/sampling_params.py"),
        "prompt_logprobs with prefix caching",
        "a request with prompt_logprobs skips reading the prefix cache, so every position's log-probability comes back",
    )

    tokens_prompt = fields(source.class_node("vllm/inputs/llm.py", "TokensPrompt"))
    check("prompt_token_ids" in tokens_prompt, "TokensPrompt(prompt_token_ids=...)", f"fields {sorted(tokens_prompt)}")
    exported = "TokensPrompt" in source.text("vllm/inputs/__init__.py")
    check(exported, "from vllm.inputs import TokensPrompt", "exported" if exported else "not exported")
    top_level = source.text("vllm/__init__.py")
    for name in ("LLM", "SamplingParams"):
        found = re.search(rf'"{name}":\s*"\.', top_level) is not None
        check(found, f"from vllm import {name}", "in vllm's lazy MODULE_ATTRS" if found else "not exported")

    lora = fields(source.class_node("vllm/lora/request.py", "LoRARequest"))
    missing = [f for f in ("lora_name", "lora_int_id", "lora_path") if f not in lora]
    check(not missing, "LoRARequest(lora_name, lora_int_id, lora_path)", f"missing {missing}")
    slots = literal_values(source.text("vllm/config/lora.py"), "MaxLoRARanks")
    check(slots == LORA_RANK_SLOTS, "LoRA rank slots", f"vLLM {slots}; medsft {LORA_RANK_SLOTS}")

    outputs, _ = parameters(source.class_node("vllm/outputs.py", "RequestOutput"), "__init__")
    check("prompt_logprobs" in outputs and "outputs" in outputs, "RequestOutput", "has prompt_logprobs and outputs")
    completion = fields(source.class_node("vllm/outputs.py", "CompletionOutput"))
    check("token_ids" in completion, "CompletionOutput.token_ids", f"fields {sorted(completion)}")
    logprob = fields(source.class_node("vllm/logprobs.py", "Logprob"))
    check("logprob" in logprob, "Logprob.logprob", f"fields {sorted(logprob)}")
    mode = field_default(source.class_node("vllm/config/model.py", "ModelConfig"), "logprobs_mode")
    check(mode == "raw_logprobs", "logprobs_mode default", f"{mode!r}: log-softmax of the raw logits, as lm-eval reads")

    registry = source.text("vllm/model_executor/models/registry.py")
    for architecture in RECIPE_ARCHITECTURES:
        found = f'"{architecture}":' in registry
        check(found, f"model {architecture}", "in vLLM's registry" if found else "not supported")
    gemma = source.class_node("vllm/model_executor/models/gemma3.py", "Gemma3ForCausalLM")
    bases = [getattr(b, "id", "") for b in gemma.bases]
    check("SupportsLoRA" in bases, "Gemma3ForCausalLM LoRA", f"bases {bases}")
    methods = literal_values(source.text("vllm/model_executor/layers/quantization/__init__.py"), "QuantizationMethods")
    check(None, "bitsandbytes loading", f"in QuantizationMethods: {'bitsandbytes' in methods} (medsft loads 16-bit)")

    metadata = source.metadata()
    torch_pin = re.search(r"^Requires-Dist: torch==([\d.]+)", metadata, re.M)
    torch_version = tuple(int(x) for x in torch_pin.group(1).split(".")[:2]) if torch_pin else None
    check(
        torch_version is not None and torch_version < UNSLOTH_TORCH_BELOW,
        "torch pin",
        f"vLLM needs torch=={torch_pin.group(1) if torch_pin else '?'}; Unsloth needs <2.15",
    )
    bounds = re.search(r"^Requires-Dist: transformers([^\n;]*)", metadata, re.M)
    needed = bounds.group(1).strip() if bounds else "?"
    fits = bounds is not None and TRANSFORMERS_PIN in SpecifierSet(needed)
    check(fits, "transformers pin", f"vLLM needs transformers{needed}; requirements.txt pins {TRANSFORMERS_PIN}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a vLLM wheel (default: the installed vllm)")
    args = parser.parse_args()
    source = Source(args.wheel)
    version = re.search(r"^Version: (\S+)", source.metadata(), re.M)
    print(f"# vLLM {version.group(1) if version else '?'} from {source.label}")
    results = run_checks(source)
    for ok, name, detail in results:
        print(f"{'note' if ok is None else 'ok  ' if ok else 'FAIL'} | {name} | {detail}")
    failed = sum(ok is False for ok, _, _ in results)
    print(f"# {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
