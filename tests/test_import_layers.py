"""The package's import graph: no circles, and no import from a lower layer up to a higher one.

Every `import medsft...` counts, at module level or inside a function, so a lazy import cannot hide a circle.
The layers, lowest first (docs/layout.md explains them):

0. the package root, `config` (a leaf: it imports nothing from medsft), `quiet`, `cli_errors`;
1. tools every stage uses: `runs` (run folders), `templates`, `models` (where a model comes from), the llama.cpp
   toolchain and its converter/quantizer calls (`export.llamacpp_toolchain`, `export.gguf`),
   `train.distributed`;
2. `data` and the benchmark registry;
3. the model runtime: `train.fast_language_model`, `train.backend`, `train.labels`, `train.cpu_step`;
4. `evaluate`;
5. `train` (the steps, callbacks, checkpoint selection by validation accuracy);
6. `export` (merge, GGUF, checks, card, chat, server);
7. the runner: `pipeline`, `run_summary`, `sweep`;
8. what users call: `stages` (the notebooks' helpers) and the CLI.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "medsft"

# Most specific prefix first: a module's layer is that of the first prefix it starts with.
LAYERS = (
    ("medsft.__main__", 8),
    ("medsft.stages", 8),
    ("medsft.pipeline", 7),
    ("medsft.run_summary", 7),
    ("medsft.sweep", 7),
    ("medsft.export.llamacpp_toolchain", 1),
    ("medsft.export.gguf", 1),
    ("medsft.export", 6),
    ("medsft.train.distributed", 1),
    ("medsft.train.fast_language_model", 3),
    ("medsft.train.backend", 3),
    ("medsft.train.labels", 3),
    ("medsft.train.cpu_step", 3),
    ("medsft.train", 5),
    ("medsft.evaluate", 4),
    ("medsft.tasks", 2),
    ("medsft.data", 2),
    ("medsft.runs", 1),
    ("medsft.templates", 1),
    ("medsft.models", 1),
    ("medsft.config", 0),
    ("medsft.quiet", 0),
    ("medsft.cli_errors", 0),
    ("medsft", 0),
)


def layer(module: str) -> int:
    return next(n for prefix, n in LAYERS if module == prefix or module.startswith(prefix + "."))


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the medsft modules it imports (a name imported from a package is its submodule when one exists)."""
    known = modules()

    def owner(name: str) -> str:
        while name not in known:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("medsft"):
                graph[name] |= {owner(f"{node.module}.{alias.name}") for alias in node.names}
            elif isinstance(node, ast.Import):
                graph[name] |= {owner(alias.name) for alias in node.names if alias.name.startswith("medsft")}
        graph[name].discard(name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    assert all(isinstance(layer(name), int) for name in modules())


def test_the_package_has_no_import_circle() -> None:
    assert circles(import_graph()) == []


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = sorted(
        f"{source} ({layer(source)}) -> {target} ({layer(target)})"
        for source, targets in import_graph().items()
        for target in targets
        if layer(source) < layer(target)
    )
    assert upward == []


def test_config_is_a_leaf() -> None:
    assert import_graph().get("medsft.config", set()) == set()


def test_the_checks_see_a_circle_and_an_upward_import() -> None:
    """The checks themselves can fail: a made-up circle and a made-up upward edge are found."""
    assert circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert layer("medsft.config") < layer("medsft.evaluate.tasks")
