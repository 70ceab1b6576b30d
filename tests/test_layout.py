"""The package layout: import edges between simrl's packages form no cycle, the modules of ``simrl.experiment``
form none among themselves, evaluation sits below the trainers and the experiment, and no module imports
another package's private names (read from the source with ``ast``; nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1] / "simrl"


def _package(module: str) -> str:
    """``simrl.envs.search`` -> ``envs``; a top-level module (``simrl.types``) is its own package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports() -> list[tuple[str, str, list[str], int]]:
    """``(importing module, imported module, imported names, line)`` for every ``simrl`` import."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("simrl"):
                found.append((module, node.module, [a.name for a in node.names], node.lineno))
            elif isinstance(node, ast.Import):
                found += [(module, a.name, [], node.lineno) for a in node.names if a.name.startswith("simrl")]
    return found


def package_graph() -> nx.DiGraph:
    """Package -> package import edges (any import, top-level or inside a function)."""
    graph = nx.DiGraph()
    for source, target, names, _ in _imports():
        src = _package(source)
        targets = [_package(f"{target}.{n}") for n in names] if target == "simrl" else [_package(target)]
        graph.add_edges_from((src, t) for t in targets if t != src)
    return graph


def test_no_import_cycle_between_packages():
    cycles = list(nx.simple_cycles(package_graph()))
    assert not cycles, f"import cycles between simrl packages: {cycles}"


def module_graph(package: str) -> nx.DiGraph:
    """Module -> module import edges among the modules of ``simrl.<package>`` (any import, ``TYPE_CHECKING`` and
    function-level ones included; ``from simrl.<package> import module`` counts as an import of that module)."""
    prefix = f"simrl.{package}"
    graph = nx.DiGraph()
    for source, target, names, _ in _imports():
        if not source.startswith(prefix + ".") and source != prefix:
            continue
        targets = [f"{target}.{n}" for n in names] if target == prefix else [target]
        graph.add_node(source)
        graph.add_edges_from((source, t) for t in targets if t.startswith(prefix + ".") and t != source)
    return graph


def test_no_import_cycle_inside_experiment():
    graph = module_graph("experiment")
    assert graph.has_edge("simrl.experiment.ablate", "simrl.experiment.report")  # the checker reads the package
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles inside simrl.experiment: {cycles}"


def test_evaluation_sits_below_the_trainers_and_the_experiment():
    graph = package_graph()
    assert graph.has_edge("trainers", "evaluation") and graph.has_edge("experiment", "evaluation")
    for above in ("trainers", "experiment", "integrations", "fidelity"):
        assert not nx.has_path(graph, "evaluation", above), f"simrl.evaluation reaches simrl.{above}"


def test_envs_never_imports_wm():
    graph = package_graph()
    assert graph.has_node("envs") and not graph.has_edge("envs", "wm")
    assert graph.has_edge("wm", "envs")  # the world-model version builds on the environments


def test_no_private_name_imported_across_packages():
    crossing = [f"{source}:{line} imports {target}.{name}" for source, target, names, line in _imports()
                for name in names
                if name.startswith("_") and not name.startswith("__") and _package(source) != _package(target)]
    assert not crossing, crossing


def test_the_checker_sees_a_cycle():
    graph = package_graph()
    graph.add_edge("envs", "wm")
    assert any({"envs", "wm"} <= set(c) for c in nx.simple_cycles(graph))
    inside = module_graph("experiment")
    inside.add_edge("simrl.experiment.recipe", "simrl.experiment.heldout")  # the circle this layout removed
    assert any("simrl.experiment.heldout" in c for c in nx.simple_cycles(inside))


def _env_ids() -> set[str]:
    """The ids the built-in environment modules register (``EnvSpec(id="...")`` in ``simrl/envs``)."""
    ids = set()
    for path in sorted((ROOT / "envs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "EnvSpec":
                ids |= {k.value.value for k in node.keywords if k.arg == "id" and isinstance(k.value, ast.Constant)}
    return ids


def _literals(node: ast.expr) -> list[str]:
    """The string constants of one side of a comparison (a constant, or a tuple / list / set of them)."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [n.value for n in items if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def literal_env_id_comparisons(root: Path = ROOT) -> list[str]:
    """``module:line`` of every comparison with a literal environment id outside ``simrl/envs`` (``x == "search"``,
    ``name in ("search", "mcp")``): what an environment is belongs to its spec and world-model adapter."""
    ids, found = _env_ids(), []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in ("envs", "cli"):  # cli: the CLI package's link in a worktree
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(v in ids for side in sides for v in _literals(side)):
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_no_literal_environment_id_is_compared_outside_its_environment():
    assert {"search", "mcp", "mcp-world", "bfcl"} <= _env_ids()
    found = literal_env_id_comparisons() + literal_env_id_comparisons(ROOT.parent / "cli")
    assert not found, found


def test_the_env_id_checker_sees_a_comparison(tmp_path):
    (tmp_path / "simrl" / "experiment").mkdir(parents=True)
    (tmp_path / "simrl" / "envs").mkdir()
    (tmp_path / "simrl" / "experiment" / "probe.py").write_text('def f(env_id):\n    return env_id in ("search", "x")\n')
    (tmp_path / "simrl" / "envs" / "own.py").write_text('def f(env_id):\n    return env_id == "search"\n')
    assert literal_env_id_comparisons(tmp_path / "simrl") == ["simrl/experiment/probe.py:2"]
