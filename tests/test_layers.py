"""The import layers of docs/architecture.md, read from the code: every module's imports (at the top,
inside functions, and under ``TYPE_CHECKING``) are parsed, never executed, and checked against the
rules below; then the graph between packages must have no cycle.

::

    5  orchestrator.cli   orchestrator.demo          nothing imports them
    4  orchestrator.render                           tables and JSON for the CLI and the demo
    3  orchestrator.control                          the control plane as a library
    2  orchestrator.training  orchestrator.publish  serving  orchestrator.image   never each other
    1  orchestrator.core                             imports nothing of ours outside itself
       infra                                         the core only

Each rule is checked twice: against the code, and against an import graph made to break it (so a
rule that could never fail is a failure too).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("orchestrator", "serving", "infra")

# The layers' packages: the longest matching prefix of a module's name names its package.
PACKAGES = {
    "orchestrator": "root",  # the distribution's root: its version, nothing else
    "orchestrator.__main__": "cli",  # `python -m orchestrator` is the command
    "orchestrator.core": "core",
    "orchestrator.training": "training",
    "orchestrator.publish": "publish",
    "orchestrator.image": "image",
    "orchestrator.control": "control",
    "orchestrator.render": "render",
    "orchestrator.cli": "cli",
    "orchestrator.demo": "demo",
    "serving": "serving",
    "infra": "infra",
}
LEVEL_2 = {"training", "publish", "serving", "image"}
ABOVE_CONTROL = {"render", "cli", "demo"}


def package_of(module: str) -> str | None:
    """The package of ``module`` (a dotted name), or None when it is not ours."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if (prefix := ".".join(parts[:n])) in PACKAGES:
            return PACKAGES[prefix]
    return None


@dataclass(frozen=True)
class Edge:
    """``importer`` (a module, in ``path`` at ``line``) imports ``imported`` (a module)."""

    importer: str
    imported: str
    path: str
    line: int

    @property
    def source(self) -> str | None:
        return package_of(self.importer)

    @property
    def target(self) -> str | None:
        return package_of(self.imported)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        return f"{where}: {self.importer} ({self.source}) imports {self.imported} ({self.target})"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_edges(path: Path) -> list[Edge]:
    """Every import in the file at ``path`` (see :func:`source_edges`)."""
    return source_edges(
        path.read_text(encoding="utf-8"),
        _module_name(path),
        is_package=path.name == "__init__.py",
        path=str(path.relative_to(ROOT)),
    )


def source_edges(text: str, module: str, *, is_package: bool, path: str) -> list[Edge]:
    """Every import in ``text``, the source of ``module``, wherever it stands (top level, inside a
    function, under ``if TYPE_CHECKING``), relative ones resolved."""
    edges = []
    for node in ast.walk(ast.parse(text, filename=path)):
        if isinstance(node, ast.Import):
            edges.extend(Edge(module, alias.name, path, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from pkg import sub` may name a submodule: count the most specific of the two.
            edges.extend(Edge(module, f"{target}.{alias.name}", path, node.lineno) for alias in node.names)
    return edges


def project_edges() -> list[Edge]:
    """Every import, from every module of ours to a module of ours."""
    edges = []
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            edges.extend(e for e in module_edges(path) if e.target is not None)
    return edges


# -- the rules: each takes one import between two of our packages and says what is wrong with it ----
Rule = Callable[[str, str], str | None]


def core_imports_only_core(source: str, target: str) -> str | None:
    if source == "core" and target not in {"core", "root"}:
        return "the core imports nothing of ours outside itself"
    return None


def level_2_stays_apart(source: str, target: str) -> str | None:
    if source in LEVEL_2 and target != source and target in LEVEL_2 | {"control"} | ABOVE_CONTROL:
        return "training, publish, serving and image import neither each other nor the layers above"
    return None


def control_stays_below(source: str, target: str) -> str | None:
    if source == "control" and target in {"serving", "training", "image"} | ABOVE_CONTROL:
        return "the control plane imports neither serving, training, image, render, cli nor demo"
    return None


def render_below_cli_and_demo(source: str, target: str) -> str | None:
    if source == "render" and target in {"cli", "demo"}:
        return "rendering imports neither the CLI nor the demo"
    return None


def infra_imports_only_core(source: str, target: str) -> str | None:
    if source == "infra" and target not in {"infra", "core"}:
        return "infra imports only orchestrator.core"
    return None


def nothing_imports_cli_or_demo(source: str, target: str) -> str | None:
    # The one import into the top layer: the `demo` command runs the demo.
    if target in {"cli", "demo"} and source != target and (source, target) != ("cli", "demo"):
        return "nothing imports the CLI or the demo except themselves (and the demo command the demo)"
    return None


RULES: dict[str, Rule] = {
    rule.__name__: rule
    for rule in (
        core_imports_only_core,
        level_2_stays_apart,
        control_stays_below,
        render_below_cli_and_demo,
        infra_imports_only_core,
        nothing_imports_cli_or_demo,
    )
}

# For each rule, imports that must break it (source package, target package).
BROKEN_BY = {
    "core_imports_only_core": [("core", "control"), ("core", "serving"), ("core", "training")],
    "level_2_stays_apart": [
        ("training", "serving"),
        ("serving", "training"),
        ("publish", "training"),
        ("image", "publish"),
        ("serving", "control"),
        ("publish", "render"),
        ("training", "cli"),
    ],
    "control_stays_below": [("control", "serving"), ("control", "training"), ("control", "render")],
    "render_below_cli_and_demo": [("render", "cli"), ("render", "demo")],
    "infra_imports_only_core": [("infra", "control"), ("infra", "serving"), ("infra", "root")],
    "nothing_imports_cli_or_demo": [
        ("control", "cli"),
        ("core", "demo"),
        ("demo", "cli"),
        ("serving", "cli"),
    ],
}


def broken(edges: list[Edge], rule: Rule) -> list[str]:
    found = []
    for edge in edges:
        assert edge.source is not None
        assert edge.target is not None
        if (why := rule(edge.source, edge.target)) is not None:
            found.append(f"{edge}: {why}")
    return found


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The cycles between packages: strongly connected groups of more than one package (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        assert edge.source is not None
        assert edge.target is not None
        graph.setdefault(edge.source, set())
        graph.setdefault(edge.target, set())
        if edge.source != edge.target:
            graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    found = project_edges()
    assert len(found) > 100, "the imports were not read"
    return found


@pytest.mark.parametrize("name", RULES)
def test_the_code_keeps_the_rule(edges: list[Edge], name: str) -> None:
    assert broken(edges, RULES[name]) == []


@pytest.mark.parametrize("name", RULES)
def test_the_rule_can_fail(name: str) -> None:
    for source, target in BROKEN_BY[name]:
        edge = Edge(_any_module(source), _any_module(target), "made-up.py", 1)
        assert broken([edge], RULES[name]), f"{name} lets {source} import {target}"


def test_every_module_has_a_layer() -> None:
    """A module outside the packages above (a new top-level module of orchestrator/) would escape
    every rule: only the distribution's root, orchestrator/__init__.py, is "root"."""
    strays = []
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            module = _module_name(path)
            if package_of(module) == "root" and module != "orchestrator":
                strays.append(module)
    assert strays == []


def test_no_cycle_between_packages(edges: list[Edge]) -> None:
    assert cycles(edges) == []


def test_a_cycle_is_found() -> None:
    made_up = [
        Edge("orchestrator.control.plane", "orchestrator.publish.sync", "a.py", 1),
        Edge("orchestrator.publish.sync", "orchestrator.control.config", "b.py", 1),
    ]
    assert cycles(made_up) == [["control", "publish"]]


def test_imports_inside_functions_and_relative_ones_are_read() -> None:
    """What the checker reads: a late import in a function, one under TYPE_CHECKING, relative ones."""
    text = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from orchestrator.cli import app\n"
        "def f():\n    import serving.app\n"
        "from .steps import health_round\nfrom .. import core\n"
    )
    edges = source_edges(text, "orchestrator.control.sample", is_package=False, path="sample.py")
    assert {e.imported for e in edges} == {
        "typing.TYPE_CHECKING",
        "orchestrator.cli.app",
        "serving.app",
        "orchestrator.control.steps.health_round",
        "orchestrator.core",
    }
    assert broken([e for e in edges if e.target is not None], RULES["control_stays_below"]), (
        "a late import counts"
    )


_EXAMPLES: Mapping[str, str] = {
    "root": "orchestrator",
    "core": "orchestrator.core.errors",
    "training": "orchestrator.training.pipeline",
    "publish": "orchestrator.publish.sync",
    "image": "orchestrator.image",
    "control": "orchestrator.control.plane",
    "render": "orchestrator.render.control",
    "cli": "orchestrator.cli.control",
    "demo": "orchestrator.demo.story",
    "serving": "serving.app",
    "infra": "infra.specs.endpoint",
}


def _any_module(package: str) -> str:
    module = _EXAMPLES[package]
    assert package_of(module) == package
    return module
