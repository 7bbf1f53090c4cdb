"""Check every Unsloth / unsloth_zoo call medsft makes against the installed Unsloth's signatures and source.

    UNSLOTH_ALLOW_CPU=1 python scripts/check_unsloth_api.py > scripts/check_unsloth_api.out.txt

Needs an environment with `requirements.txt` installed (Unsloth imports on a CPU with UNSLOTH_ALLOW_CPU=1) and the
llama.cpp toolchain folder from `python -m medsft.export.llamacpp_toolchain setup`. Prints one line per check,
`ok`, `FAIL` or `note` (information, never a failure), and exits 1 if any check fails.
Unsloth's own output goes to stderr.

What medsft passes is read from medsft's source (the keywords of its calls), so the checks follow medsft's
code; what Unsloth accepts is read from the installed Unsloth (signatures, registries, source). Hub configs
are read from the Hugging Face cache only (HF_HUB_OFFLINE=1 unless set); without one a checkpoint's
architecture comes from KNOWN_HUB_CONFIGS. Nothing is downloaded, and the shared toolchain folder is only
read: Unsloth's converter patcher runs on a temporary copy of the converter sources.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import os
import re
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from functools import partial
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LLAMA_CPP_VARIABLES = ("UNSLOTH_LLAMA_CPP_PATH", "UNSLOTH_LLAMA_CPP_OFFLINE", "UNSLOTH_AUTO_INSTALL")
# What each hub checkpoint's config.json says (model_type, architectures[0], has a vision tower), for when the
# config is not in the local Hugging Face cache. Unsloth routes on exactly these fields.
KNOWN_HUB_CONFIGS = {
    "unsloth/gemma-3-270m-it": ("gemma3_text", "Gemma3ForCausalLM", False),
    "unsloth/gemma-3-1b-it": ("gemma3_text", "Gemma3ForCausalLM", False),
    "unsloth/gemma-3-12b-it": ("gemma3", "Gemma3ForConditionalGeneration", True),
    "unsloth/gemma-4-E2B-it": ("gemma4", "Gemma4ForConditionalGeneration", True),
    "unsloth/Llama-3.2-1B-Instruct": ("llama", "LlamaForCausalLM", False),
}

# What peft's "all-linear" selects on Gemma 3/4 and Llama 3 decoders (tests/test_backend.py resolves it on each).
DECODER_LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
Result = tuple[bool | None, str]  # (True ok | False FAIL | None note, what was compared)
Check = Callable[[], Result]


# ----------------------------------------------------------------------------------------------- helpers
def call_keywords(func: Callable[..., Any], method: str) -> set[str]:
    """Keyword names `func` passes to calls of `method`, with `**name` expanded where `name` is a dict literal."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    dicts = {
        target.id: {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == method:
            for keyword in node.keywords:
                if keyword.arg is not None:
                    names.add(keyword.arg)
                elif isinstance(keyword.value, ast.Name):
                    names |= dicts.get(keyword.value.id, set())
    return names


def built_keywords(func: Callable[..., Any]) -> tuple[set[str], set[str]]:
    """Keyword names an argument builder such as `UnslothBackend.load_arguments` puts in its dict: those of the
    dict it starts with (or returns), and those it adds later with `|=` (e.g. only for multimodal checkpoints)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    keys = lambda node: {k.value for k in node.keys if isinstance(k, ast.Constant)}  # noqa: E731
    first: set[str] = set()
    added: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.Return)) and isinstance(node.value, ast.Dict):
            first |= keys(node.value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.value, ast.Dict):
            added |= keys(node.value)
    return first, added


def method_source(cls: type, name: str) -> str:
    """The source of `cls.name` as written in its class (decorators' __wrapped__ chains not followed)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    node = next(n for n in tree.body[0].body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.unparse(node)


def parameters(func: Callable[..., Any]) -> set[str]:
    """Named parameters of the real implementation (decorators unwrapped); *args/**kwargs do not count."""
    params = inspect.signature(inspect.unwrap(func)).parameters.values()
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def compare_keywords(passed: set[str], func: Callable[..., Any], where: str) -> Result:
    missing = passed - parameters(func)
    name = f"{inspect.unwrap(func).__module__}.{inspect.unwrap(func).__qualname__}"
    if missing:
        return False, f"{where} passes {sorted(missing)}, which {name} does not take"
    return True, f"{where} keywords {sorted(passed)} are all parameters of {name}"


def recipe_texts() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted(ROOT.glob("recipes/*/*.yaml"))}


def recipe_models() -> list[str]:
    """Every `model` in recipes/*/*.yaml, and the hub ids their comments name (`On a GPU use model: ...`)."""
    named = re.findall(r"model:\s*([\w.-]+/[\w.-]*\w)", "\n".join(recipe_texts().values()))
    return list(dict.fromkeys([*recipe_values("model"), *named]))


def recipe_values(key: str) -> list[Any]:
    import yaml

    values = [yaml.safe_load(text).get(key) for text in recipe_texts().values()]
    return [v for v in values if v is not None]


def model_config(spec: str) -> tuple[Any, str]:
    """The checkpoint's config (local folder, else the HF cache, else KNOWN_HUB_CONFIGS) and where it came from."""
    from medsft.models import resolve_model
    from medsft.train.backend import read_model_config

    location = resolve_model(spec).location
    found = read_model_config(location)
    if found is not None:
        return SimpleNamespace(**found), "config.json" if Path(location).is_dir() else "HF cache"
    if spec not in KNOWN_HUB_CONFIGS:
        raise LookupError(f"no config for {spec}: not cached and not in KNOWN_HUB_CONFIGS")
    model_type, architecture, vision = KNOWN_HUB_CONFIGS[spec]
    fields: dict[str, Any] = {"model_type": model_type, "architectures": [architecture]}
    if vision:
        fields["vision_config"] = {}
    return SimpleNamespace(**fields), "KNOWN_HUB_CONFIGS (not cached)"


def unsloth_sees_vlm(config: Any) -> bool:
    """FastModel.from_pretrained's own test (loader.py): a *ForConditionalGeneration class or a vision config."""
    from unsloth.models import loader

    source = inspect.getsource(inspect.unwrap(loader.FastModel.from_pretrained))
    assert 'is_vlm = any(x.endswith("ForConditionalGeneration") for x in architectures)' in source, "test moved"
    architectures = getattr(config, "architectures", None) or []
    return any(a.endswith("ForConditionalGeneration") for a in architectures) or loader._has_vision_config(config)


def fast_language_model_types() -> list[str]:
    """model_types FastLanguageModel.from_pretrained loads itself; it hands every other one to FastModel."""
    from unsloth.models import loader

    function = inspect.unwrap(loader.FastLanguageModel.from_pretrained)
    code = ast.unparse(ast.parse(textwrap.dedent(inspect.getsource(function))))  # without comments
    return list(dict.fromkeys(re.findall(r"model_type == '(\w+)'", code)))


def loader_route(loader_name: str, model_type: str) -> str:
    """Which implementation ends up loading the checkpoint when medsft calls `loader_name`.from_pretrained."""
    if loader_name == "FastLanguageModel" and model_type in fast_language_model_types():
        return "FastLanguageModel's own path"
    return "FastModel.from_pretrained"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Unsloth prints banners and progress to stdout; keep stdout for the check lines."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def toolchain_root() -> Path:
    from medsft.export.llamacpp_toolchain import toolchain_root

    return toolchain_root()


def quantization_lists() -> list[list[str]]:
    from medsft.config import RunConfig

    lists = [RunConfig().export_quantizations, *recipe_values("export_quantizations")]
    return [list(q) for q in dict.fromkeys(tuple(q) for q in lists)]


# ------------------------------------------------------------------------------------ 1. loader per model
def check_loader_classes() -> Result:
    import unsloth
    from unsloth.models import loader

    same = unsloth.FastLanguageModel is loader.FastLanguageModel and unsloth.FastModel is loader.FastModel
    return same, "unsloth.FastLanguageModel / FastModel are unsloth.models.loader's classes (not the MLX stubs)"


def check_loader_choice(spec: str) -> Result:
    from medsft.models import resolve_model
    from medsft.train.backend import MULTIMODAL_NAME_HINTS, is_multimodal, unsloth_loader

    with quiet():
        chosen = unsloth_loader(resolve_model(spec).location).__name__
    config, source = model_config(spec)
    vlm = unsloth_sees_vlm(config)
    wanted = "FastModel" if vlm else "FastLanguageModel"
    hint = any(h in spec.lower() for h in MULTIMODAL_NAME_HINTS)
    agree = chosen == wanted and is_multimodal(vars(config)) == vlm
    return agree, (
        f"medsft picks {chosen}; Unsloth sees {config.model_type}/{config.architectures[0]} ({source}) as "
        f"{'multimodal' if vlm else 'text-only'} -> {wanted}; medsft's name hint says "
        f"{'multimodal' if hint else 'text-only'}; medsft's {chosen}.from_pretrained call is served by "
        f"{loader_route(chosen, config.model_type)}"
    )


def check_adapter_loader() -> Result:
    """The export reloads `<run>/adapter`; a folder with only adapter_config.json has no vision config to read."""
    from medsft.train.backend import unsloth_loader

    base = "unsloth/gemma-3-12b-it"
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / "adapter"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
        with quiet():
            chosen = unsloth_loader(str(adapter)).__name__
    model_type = KNOWN_HUB_CONFIGS[base][0]
    route = loader_route(chosen, model_type)
    text = f"an adapter folder of {base} outside a run folder: medsft picks {chosen}, Unsloth wants FastModel"
    if chosen == "FastModel":
        return True, text
    if route == "FastModel.from_pretrained":
        return None, f"{text}; harmless, as FastLanguageModel hands {model_type} to {route} itself"
    return False, text


def check_from_pretrained() -> Result:
    from unsloth import FastLanguageModel, FastModel

    from medsft.train.backend import UnslothBackend

    passed, _ = built_keywords(UnslothBackend.load_arguments)
    results = [
        compare_keywords(passed, c.from_pretrained, "UnslothBackend.load_arguments")
        for c in (FastLanguageModel, FastModel)
    ]
    return all(ok for ok, _ in results), " | ".join(detail for _, detail in results)


# -------------------------------------------------------------------------------------- 2. get_peft_model
def check_get_peft_model() -> Result:
    from unsloth import FastLanguageModel, FastModel
    from unsloth.models.llama import FastLlamaModel
    from unsloth.models.vision import FastBaseModel

    from medsft.train.backend import UnslothBackend

    # Every checkpoint gets the first dict's keywords; multimodal ones (loaded with FastModel) also the added ones.
    common, multimodal_only = built_keywords(UnslothBackend.lora_arguments)
    every = common | multimodal_only
    routes = [
        (FastLanguageModel, "FastLlamaModel.get_peft_model(model,"),
        (FastModel, "FastBaseModel.get_peft_model(model,"),
        (FastLlamaModel, "FastBaseModel.get_peft_model(model=model,"),  # models Unsloth loaded through FastModel
    ]
    unrouted = [cls.__name__ for cls, call in routes if call not in method_source(cls, "get_peft_model")]
    results = [
        compare_keywords(common, FastLlamaModel.get_peft_model, "FastLanguageModel.get_peft_model call"),
        compare_keywords(every, FastBaseModel.get_peft_model, "FastModel.get_peft_model call"),
        compare_keywords(common, FastBaseModel.get_peft_model, "FastLanguageModel.get_peft_model on a FastModel load"),
    ]
    detail = " | ".join(d for _, d in results) + (f" | routes not found in {unrouted}" if unrouted else "")
    return all(ok for ok, _ in results) and not unrouted, detail


def check_lora_targets() -> Result:
    from unsloth.models.llama import FastLlamaModel
    from unsloth.models.vision import FastBaseModel

    from medsft.config import LORA_TARGETS

    source = inspect.getsource(FastLlamaModel.get_peft_model)
    block = re.search(r"accepted_modules = frozenset\(\s*\((.*?)\)", source, re.S)
    accepted = set(re.findall(r'"(\w+)"', block.group(1))) if block else set()
    ours = {m for modules in LORA_TARGETS.values() for m in modules} | set(DECODER_LINEAR_LAYERS)
    scoped = "not finetune_vision_layers" in inspect.getsource(FastBaseModel.get_peft_model)
    ok = bool(accepted) and ours <= accepted and scoped
    return ok, (
        f"medsft's LORA_TARGETS modules {sorted(ours)} are in FastLlamaModel's optimised set {sorted(accepted)}; "
        f"FastBaseModel scopes an explicit target list by finetune_vision_layers=False: {scoped}"
    )


# ------------------------------------------------------------------------------------ 3. chat templates
def check_chat_template_signature() -> Result:
    from unsloth.chat_templates import get_chat_template

    from medsft.train.backend import UnslothBackend

    passed = call_keywords(UnslothBackend.get_chat_template, "get_chat_template")
    return compare_keywords(passed, get_chat_template, "medsft")


def check_chat_template_names() -> Result:
    from unsloth.chat_templates import CHAT_TEMPLATES

    from medsft.templates import ALIASES, TEMPLATE_FILES

    names = {*recipe_values("chat_template"), *TEMPLATE_FILES, *ALIASES}
    missing = sorted(names - set(CHAT_TEMPLATES))
    return not missing, (
        f"names in recipes and medsft.templates {sorted(names)} are keys of unsloth.chat_templates.CHAT_TEMPLATES"
        + (f"; missing: {missing}" if missing else "")
    )


def check_train_on_responses_only() -> Result:
    from unsloth_zoo.dataset_utils import train_on_responses_only

    has = {"trainer", "instruction_part", "response_part"} <= parameters(train_on_responses_only)
    called = any("train_on_responses_only(" in p.read_text(encoding="utf-8") for p in (ROOT / "medsft").rglob("*.py"))
    if not has:
        return (
            False,
            "unsloth_zoo.dataset_utils.train_on_responses_only lost (trainer, instruction_part, response_part)",
        )
    detail = "unsloth_zoo.dataset_utils.train_on_responses_only(trainer, instruction_part, response_part) exists"
    if called:
        return True, f"{detail}; medsft calls it"
    return None, f"{detail}; not called: medsft passes its own labels; labels checked on GPU by scripts/gpu_check.py"


# ------------------------------------------------------------------------------------------------ 5. saving
def bound_savers(method: str) -> list[Callable[..., Any]]:
    """The functions unsloth.save.patch_saving_functions binds as `model.<method>`."""
    import unsloth.save as save

    source = inspect.getsource(save.patch_saving_functions)
    names = re.findall(rf"\.{method} = _bind_saving_method\(\s*(\w+)", source)
    return [getattr(save, name) for name in dict.fromkeys(names)]


def check_save_merged() -> Result:
    from medsft.train.backend import UnslothBackend

    passed = {"save_directory", "tokenizer"} | call_keywords(UnslothBackend.save_merged, "save_pretrained_merged")
    assert passed > {"save_directory", "tokenizer"}, "medsft's save_pretrained_merged call moved"
    results = [compare_keywords(passed, f, "save_merged") for f in bound_savers("save_pretrained_merged")]
    accepts = all('"merged_16bit"' in inspect.getsource(f) for f in bound_savers("save_pretrained_merged"))
    ok = bool(results) and all(r for r, _ in results) and accepts
    return ok, " | ".join(d for _, d in results) + f"; save_method='merged_16bit' in their source: {accepts}"


def check_save_gguf() -> Result:
    from medsft.export.save import save_ggufs

    passed = {"save_directory", "tokenizer"} | call_keywords(save_ggufs, "save_pretrained_gguf")
    results = [compare_keywords(passed, f, "save_ggufs") for f in bound_savers("save_pretrained_gguf")]
    return bool(results) and all(r for r, _ in results), " | ".join(d for _, d in results)


def check_quantization_names() -> Result:
    from unsloth.save import ALLOWED_QUANTS

    from medsft.config import QUANTIZATIONS

    missing = sorted(set(QUANTIZATIONS) - set(ALLOWED_QUANTS))
    return not missing, (
        f"medsft.config.QUANTIZATIONS {list(QUANTIZATIONS)} (passed unchanged) are keys of unsloth.save.ALLOWED_QUANTS"
        + (f"; missing: {missing}" if missing else "")
    )


class GgufWritingModel:
    """Stands in for an Unsloth model: writes empty GGUFs where, and under the names, unsloth.save puts them."""

    def __init__(self, multimodal: bool) -> None:
        self.multimodal = multimodal

    def save_pretrained_gguf(self, save_directory: str, tokenizer: Any = None, **kwargs: Any) -> dict[str, Any]:
        from unsloth.save import _gguf_output_directory

        out = Path(_gguf_output_directory(save_directory))
        out.mkdir(parents=True, exist_ok=True)
        names = [f"model.{q.upper()}.gguf" for q in kwargs["quantization_method"]]
        names += ["model.BF16-mmproj.gguf"] if self.multimodal else []
        for name in names:
            (out / name).write_text(name)  # the content says which file ended up where
        return {"gguf_directory": str(out), "gguf_files": [str(out / n) for n in names]}


def check_gguf_files_found(quants: list[str], multimodal: bool) -> Result:
    """Run medsft's real `save_ggufs` against files laid out as Unsloth lays them out."""
    import unsloth.save as save
    import unsloth_zoo.llama_cpp as zoo

    from medsft.export.gguf import LLAMA_CPP_TYPES
    from medsft.export.save import save_ggufs

    layout = (
        'f"{save_directory}_gguf"' in inspect.getsource(save._gguf_output_directory)
        and 'f"{model_name}.{quant_method.upper()}.gguf"' in inspect.getsource(save.save_to_gguf)
        and '-mmproj.gguf"' in inspect.getsource(zoo.convert_to_gguf)
    )
    kind = "multimodal" if multimodal else "text"
    with tempfile.TemporaryDirectory() as tmp:
        gguf_dir = Path(tmp) / "gguf"
        gguf_dir.mkdir()
        finals = {q: gguf_dir / f"run-{LLAMA_CPP_TYPES[q]}.gguf" for q in quants}
        try:
            partials = save_ggufs(GgufWritingModel(multimodal), None, quants, finals)
        except Exception as err:  # medsft raises ExportError when it finds no file
            left = sorted(p.name for p in gguf_dir.iterdir())
            return False, f"{kind} {quants}: save_ggufs failed: {err} (left in gguf/: {left})"
        got = {q: Path(p).read_text() for q, p in partials.items()}
        wrong = {q: name for q, name in got.items() if name != f"model.{LLAMA_CPP_TYPES[q]}.gguf"}
        left = sorted(p.name for p in gguf_dir.iterdir() if p not in partials.values())
    ok = layout and not wrong and not left
    return ok, f"{kind} {quants}: medsft took {got}; wrong files: {wrong}; left in gguf/: {left}"


# ------------------------------------------------------------------------------------------- 6. llama.cpp
def check_variables_read() -> Result:
    import unsloth_zoo.llama_cpp as zoo

    source = inspect.getsource(zoo)
    unread = [name for name in LLAMA_CPP_VARIABLES if f'"{name}"' not in source]
    from medsft.export.llamacpp_toolchain import Toolchain

    sets = sorted(Toolchain(toolchain_root()).unsloth_environment())
    ok = not unread and sets == sorted(LLAMA_CPP_VARIABLES)
    return ok, f"Toolchain.unsloth_environment() sets {sets}; unsloth_zoo/llama_cpp.py reads all but {unread}"


def check_path_read_at_import() -> Result:
    import unsloth_zoo.llama_cpp as zoo

    module = ast.parse(inspect.getsource(zoo))
    at_import = any(
        isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "LLAMA_CPP_DEFAULT_DIR" for t in node.targets)
        and "UNSLOTH_LLAMA_CPP_PATH" in ast.unparse(node.value)
        for node in module.body
    )
    default = inspect.signature(zoo.check_llama_cpp).parameters["llama_cpp_folder"].default
    ok = at_import and default == zoo.LLAMA_CPP_DEFAULT_DIR == os.environ.get("UNSLOTH_LLAMA_CPP_PATH")
    return ok, (
        f"LLAMA_CPP_DEFAULT_DIR is a module-level constant from UNSLOTH_LLAMA_CPP_PATH: {at_import}; "
        f"check_llama_cpp() defaults to it ({default}), so the variable must be set before `import unsloth`"
    )


def imports_unsloth(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").startswith("unsloth")
    return isinstance(node, ast.Import) and any(n.name.startswith("unsloth") for n in node.names)


def check_medsft_sets_before_import() -> Result:
    import medsft.train.backend as backend

    source = inspect.getsource(backend.unsloth_status)
    ordered = 0 <= source.find("point_unsloth_at_toolchain()") < source.find("import unsloth")
    early = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "medsft").rglob("*.py")
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if imports_unsloth(node)
    ]
    return ordered and not early, (
        f"medsft.train.backend.unsloth_status calls point_unsloth_at_toolchain() before `import unsloth`: {ordered}; "
        f"medsft modules importing unsloth at module level: {early}"
    )


def check_find_toolchain_here() -> Result:
    from medsft.export.llamacpp_toolchain import ToolchainError, runtime_version

    root = toolchain_root()
    if runtime_version() is None:
        return None, (
            f"llama-cpp-python is not installed in {sys.prefix}, so medsft's find_toolchain() raises and "
            "point_unsloth_at_toolchain() sets nothing here (run `python -m medsft.export.llamacpp_toolchain setup`); "
            "this "
            f"check sets Toolchain({root}).unsloth_environment() itself"
        )
    try:
        from medsft.export.llamacpp_toolchain import find_toolchain

        return True, f"find_toolchain() -> {find_toolchain().root}"
    except ToolchainError as err:
        return False, str(err)


def check_llama_cpp_accepts() -> Result:
    import unsloth_zoo.llama_cpp as zoo

    root = str(toolchain_root())
    try:
        quantizer, converter = zoo.check_llama_cpp(root)
        default = zoo.check_llama_cpp()
    except Exception as err:  # check_llama_cpp raises RuntimeError saying what is missing
        return False, f"unsloth_zoo.llama_cpp.check_llama_cpp({root}) refuses it: {err}"
    return default == (quantizer, converter), (
        f"check_llama_cpp({root}) -> quantizer {Path(quantizer).name} (answers --help), converter "
        f"{Path(converter).name}; check_llama_cpp() with no argument (as save_to_gguf calls it) gives the same"
    )


def check_converter_found() -> Result:
    import unsloth_zoo.llama_cpp as zoo

    root = toolchain_root()
    os.environ.pop("UNSLOTH_LLAMA_CPP_SCRIPTS_DIR", None)
    found = zoo._resolve_bundle_convert_script()
    content = (root / "convert_hf_to_gguf.py").read_bytes()
    layout = zoo._detect_converter_layout(content, str(root))
    ok = found is not None and Path(found[0]) == root / "convert_hf_to_gguf.py" and layout == "package"
    return ok, (
        f"_resolve_bundle_convert_script() -> {found[0] if found else None} ({layout} layout, co-versioned "
        f"conversion/ and gguf-py/), so no download is attempted"
    )


def check_converter_patch() -> Result:
    """Unsloth's converter patcher and architecture lists, on a copy so the shared folder is not modified."""
    import unsloth_zoo.llama_cpp as zoo

    root = toolchain_root()
    archs = {spec: model_config(spec)[0].architectures[0] for spec in recipe_models()}
    vlms = {spec for spec in archs if unsloth_sees_vlm(model_config(spec)[0])}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("convert_hf_to_gguf.py", "conversion", "gguf-py"):
            copy = shutil.copytree if (root / name).is_dir() else shutil.copy2
            copy(root / name, Path(tmp) / name)
        os.environ["UNSLOTH_LLAMA_CPP_SCRIPTS_DIR"] = tmp
        try:
            with quiet(), zoo.use_local_gguf():
                patched, text_archs, vision_archs = zoo._download_convert_hf_to_gguf()
            chosen = {
                zoo._resolve_converter_and_gguf(patched, sys.executable, a, s in vlms)[0] for s, a in archs.items()
            }
        except Exception as err:  # the patcher raises RuntimeError with its reason
            return False, f"Unsloth's converter patcher failed on {root}/convert_hf_to_gguf.py: {err}"
        finally:
            os.environ.pop("UNSLOTH_LLAMA_CPP_SCRIPTS_DIR", None)
    unsupported = sorted({a for a in archs.values() if a not in text_archs} | {archs[s] for s in vlms} - vision_archs)
    ok = not unsupported and chosen == {patched}
    return ok, (
        f"patched {Path(patched).name} ({len(text_archs)} text, {len(vision_archs)} vision architectures); "
        f"recipe architectures {sorted(set(archs.values()))} supported (unsupported: {unsupported}); "
        f"_resolve_converter_and_gguf keeps the patched converter for each: {chosen == {patched}}"
    )


def check_gguf_route(quants: list[str]) -> Result:
    """Which converter --outtype and which llama-quantize calls Unsloth makes for a recipe's quantizations."""
    import unsloth.save as save
    import unsloth_zoo.llama_cpp as zoo

    from medsft.export.llamacpp_toolchain import FTYPES

    converter = (toolchain_root() / "convert_hf_to_gguf.py").read_text(encoding="utf-8")
    choices = re.search(r'"--outtype", type=str, choices=\[([^\]]*)\]', converter)
    outtypes = set(re.findall(r'"(\w+)"', choices.group(1))) if choices else set()
    flags = set(re.findall(r'"(--[\w-]+)"\s*[:\]]', inspect.getsource(zoo.convert_to_gguf)))  # {"--x": ..}, a["--x"]
    missing_flags = sorted(f for f in flags if f'"{f}"' not in converter)
    shape = "{_quote(input_gguf)} {_quote(output_gguf)} {quant_type} {n_threads}" in inspect.getsource(
        zoo.quantize_gguf
    )
    routes, ok = [], bool(outtypes) and not missing_flags and shape
    for dtype in ("bf16", "f16"):  # the merged model's dtype: bf16 GPUs, f16 on a T4
        first = save._choose_first_conversion(quants, dtype)
        rest = [q for q in dict.fromkeys(quants) if q != first]
        ok = ok and first in outtypes and all(q.upper() in FTYPES for q in rest)
        step = f"llama-quantize IN OUT {{{', '.join(rest)}}} THREADS" if rest else "no llama-quantize (single pass)"
        routes.append(f"{dtype} model: converter --outtype {first}, {step}")
    return ok, (
        f"{quants}: " + "; ".join(routes) + f"; converter takes --outtype {sorted(outtypes)} and Unsloth's flags "
        f"{sorted(flags)} (missing {missing_flags}); medsft's llama-quantize takes {sorted(FTYPES)} in "
        f"Unsloth's argument order: {shape}"
    )


# ------------------------------------------------------------------------------------------------- running
def checks() -> list[tuple[str, Check]]:
    return [
        ("loader classes", check_loader_classes),
        *[(f"loader {spec}", partial(check_loader_choice, spec)) for spec in recipe_models()],
        ("loader adapter folder", check_adapter_loader),
        ("from_pretrained", check_from_pretrained),
        ("get_peft_model", check_get_peft_model),
        ("LoRA targets", check_lora_targets),
        ("get_chat_template", check_chat_template_signature),
        ("chat template names", check_chat_template_names),
        ("train_on_responses_only", check_train_on_responses_only),
        ("save_pretrained_merged", check_save_merged),
        ("save_pretrained_gguf", check_save_gguf),
        ("quantization names", check_quantization_names),
        *[
            (f"GGUF files found ({'multimodal' if mm else 'text'})", partial(check_gguf_files_found, q, mm))
            for q, mm in ((["q8_0"], False), (["q8_0", "q4_k_m"], False), (["f16", "q8_0"], True))
        ],
        ("llama.cpp variables", check_variables_read),
        ("UNSLOTH_LLAMA_CPP_PATH", check_path_read_at_import),
        ("set before import", check_medsft_sets_before_import),
        ("find_toolchain here", check_find_toolchain_here),
        ("check_llama_cpp", check_llama_cpp_accepts),
        ("converter found", check_converter_found),
        ("converter patched", check_converter_patch),
        *[(f"GGUF route {q}", partial(check_gguf_route, q)) for q in quantization_lists()],
    ]


def prepare() -> None:
    """As medsft.train.backend.point_unsloth_at_toolchain: the toolchain's variables, set before Unsloth is imported."""
    from medsft.export.llamacpp_toolchain import Toolchain

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for key, value in Toolchain(toolchain_root()).unsloth_environment().items():
        os.environ.setdefault(key, value)
    with quiet():
        import unsloth  # noqa: F401


def main() -> int:
    prepare()
    packages = ("unsloth", "unsloth_zoo", "transformers", "trl", "peft", "torch")
    print(f"# check_unsloth_api {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print("# " + ", ".join(f"{p} {version(p)}" for p in packages) + f", python {sys.version.split()[0]}")
    print("# " + ", ".join(f"{k}={os.environ.get(k)}" for k in (*LLAMA_CPP_VARIABLES, "HF_HUB_OFFLINE")))
    failures = 0
    for name, check in checks():
        try:
            ok, detail = check()
        except Exception as err:  # a check that cannot run is a failure, reported with its reason
            ok, detail = False, f"check raised {type(err).__name__}: {err}"
        failures += ok is False
        print(f"{'ok' if ok else 'note' if ok is None else 'FAIL':4} | {name} | {detail}", flush=True)
    print(f"# {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
