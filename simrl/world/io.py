"""Write and read world folders (the file layout is documented in :mod:`simrl.world.schema`).

Writes are deterministic (the same world gives the same bytes) and atomic: a world is written into a
temporary sibling folder and renamed into place, so an interrupted run never leaves half a world.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from simrl import __version__
from simrl.errors import SimrlError
from simrl.memo import resolved
from simrl.world.schema import CheckReport, Document, Manifest, SimulationInstruction, Task

_TASK_COLUMNS = ("task_id", "type", "split", "prompt", "gold", "evidence", "hops", "difficulty", "template")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_jsonl(path: Path, rows: Iterator[str]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(row)
            f.write("\n")


def tasks_table(tasks: list[Task]) -> pa.Table:
    """Tasks as an Arrow table: scalar columns plus ``gold``/``evidence`` as JSON strings."""
    cols: dict[str, list] = {c: [] for c in _TASK_COLUMNS}
    for t in tasks:
        for c in _TASK_COLUMNS:
            v = getattr(t, c)
            cols[c].append(v.model_dump_json() if c in ("gold", "evidence") else v)
    return pa.table(cols)


def _counts(graph: nx.MultiDiGraph, docs: list[Document], tasks: list[Task]) -> dict:
    ent = Counter(d["type"] for _, d in graph.nodes(data=True))
    rel = Counter(d["relation"] for _, _, d in graph.edges(data=True))
    kinds = Counter(d.kind for d in docs)
    by_split: dict[str, dict[str, int]] = {}
    for t in tasks:
        by_split.setdefault(t.type, {}).setdefault(t.split, 0)
        by_split[t.type][t.split] += 1
    return {"entities": dict(sorted(ent.items())) | {"total": graph.number_of_nodes()},
            "relations": dict(sorted(rel.items())) | {"total": graph.number_of_edges()},
            "documents": dict(sorted(kinds.items())) | {"total": len(docs)},
            "tasks": {k: dict(sorted(v.items())) for k, v in sorted(by_split.items())}}


def check_out(out: Path, *, force: bool = False) -> None:
    """Refuse an output path a world cannot be written to (checked before generating, and again on writing).

    Raises:
        SimrlError: ``out`` exists and is not a world folder, or is one and ``force`` is False.
    """
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").exists()):
            raise SimrlError(f"{out} exists and is not a world folder; choose another --out")
        if (out / "manifest.json").exists() and not force:
            raise SimrlError(f"{out} already holds a world; pass --force to replace it")


def write_world(out: Path, *, spec_yaml: str, spec_name: str, seed: int, heldout: bool,
                graph: nx.MultiDiGraph, documents: list[Document], tasks: list[Task],
                instructions: list[SimulationInstruction], checks: CheckReport, graphml: bool = False,
                force: bool = False) -> Manifest:
    """Write a world folder atomically and return its manifest.

    Raises:
        SimrlError: ``out`` exists and is not a world folder, or is one and ``force`` is False.
    """
    out = Path(out)
    check_out(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "spec.yaml").write_text(spec_yaml, encoding="utf-8")
        data = nx.node_link_data(graph, edges="edges")
        (tmp / "graph.json").write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")),
                                        encoding="utf-8")
        if graphml:
            clean = nx.MultiDiGraph()
            clean.add_nodes_from((n, {k: v for k, v in d.items() if v is not None}) for n, d in graph.nodes(data=True))
            clean.add_edges_from((u, v, k, {a: b for a, b in d.items() if b is not None})
                                 for u, v, k, d in graph.edges(keys=True, data=True))
            nx.write_graphml(clean, tmp / "graph.graphml")
        _write_jsonl(tmp / "corpus.jsonl", (d.model_dump_json() for d in documents))
        _write_jsonl(tmp / "tasks.jsonl", (t.model_dump_json() for t in tasks))
        _write_jsonl(tmp / "simulation.jsonl", (i.model_dump_json() for i in instructions))
        pq.write_table(tasks_table(tasks), tmp / "tasks.parquet", compression="zstd")
        (tmp / "checks.json").write_text(checks.model_dump_json(indent=1), encoding="utf-8")
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        manifest = Manifest(simrl_version=__version__, spec_name=spec_name, seed=seed, heldout=heldout,
                            counts=_counts(graph, documents, tasks), files=files)
        (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.chmod(0o755)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


_checked: set[str] = set()


def check_once(world: str | Path) -> None:
    """:func:`load_manifest` the first time this process meets ``world`` (by path), nothing afterwards: for code
    that opens a world per episode (a world-model environment per episode costs about 2 ms of stat calls).

    Raises:
        SimrlError: as :func:`load_manifest`, the first time.
    """
    key = str(world)
    if key not in _checked:
        load_manifest(world)
        _checked.add(key)


def _require(world: Path, name: str) -> Path:
    """The path of ``name`` in ``world``, after the world's files were checked against its manifest."""
    path = Path(world) / name
    if not path.is_file():
        raise SimrlError(f"{world} is not a world folder (no {name}); make one with `simrl world generate`")
    if name != "manifest.json":
        load_manifest(world)
    return path


_intact: dict[tuple, bool] = {}  # (path, size, mtime_ns, digest) -> matches: each file hashed once per process
REGENERATE = "regenerate it with `simrl world generate` (the same spec and seed give the same world)"


def _matches(path: Path, digest: str) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    key = (str(resolved(path)), st.st_size, st.st_mtime_ns, digest)  # (resolved once per path: stats every part)
    if key not in _intact:
        _intact[key] = _sha256(path) == digest
    return _intact[key]


def load_manifest(world: str | Path, verify: bool = True) -> Manifest:
    """Read ``manifest.json`` and (``verify``) check every file of the world against its sha256.

    The one loader check of a world: every reader of a world's files goes through it, so a world
    whose files were edited or truncated is refused up front (each file is hashed once per process).

    Raises:
        SimrlError: ``world`` is not a world folder; the manifest is damaged; a file is missing or
            does not match its checksum (one line naming the files and how to fix it).
    """
    path = _require(Path(world), "manifest.json")
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except (ValueError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SimrlError(f"{path}: damaged world manifest ({first}); {REGENERATE}") from None
    if verify:
        bad = [name for name, digest in manifest.files.items() if not _matches(Path(world) / name, digest)]
        if bad:
            raise SimrlError(f"{world}: {', '.join(bad)} do not match the checksums in manifest.json (edited, "
                             f"truncated or missing); {REGENERATE}")
    return manifest


def load_graph(world: str | Path) -> nx.MultiDiGraph:
    """Read the knowledge graph (``graph.json``) as a ``MultiDiGraph``."""
    data = json.loads(_require(Path(world), "graph.json").read_text(encoding="utf-8"))
    return nx.node_link_graph(data, directed=True, multigraph=True, edges="edges")


def iter_documents(world: str | Path) -> Iterator[Document]:
    """Stream the corpus (``corpus.jsonl``) one :class:`Document` at a time."""
    with _require(Path(world), "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            yield Document.model_validate_json(line)


def load_tasks(world: str | Path, split: str | None = None, type: str | None = None) -> list[Task]:
    """Read tasks, optionally only one split (``train``/``dev``/``test``) and/or type."""
    with _require(Path(world), "tasks.jsonl").open(encoding="utf-8") as f:
        tasks = [Task.model_validate_json(line) for line in f]
    return [t for t in tasks if (split is None or t.split == split) and (type is None or t.type == type)]


def load_instructions(world: str | Path) -> dict[str, SimulationInstruction]:
    """Read the simulation instructions, keyed by task id (for world models only, never a policy)."""
    with _require(Path(world), "simulation.jsonl").open(encoding="utf-8") as f:
        items = (SimulationInstruction.model_validate_json(line) for line in f)
        return {i.task_id: i for i in items}


def load_checks(world: str | Path) -> CheckReport:
    """Read the constraint-check report (``checks.json``)."""
    return CheckReport.model_validate_json(_require(Path(world), "checks.json").read_text(encoding="utf-8"))


def verify_files(world: str | Path) -> dict[str, bool]:
    """Compare each file's sha256 with the manifest: file name -> intact."""
    manifest = load_manifest(world, verify=False)
    return {name: _matches(Path(world) / name, digest) for name, digest in manifest.files.items()}


def spec_to_yaml(spec) -> str:
    """A resolved spec as YAML text (stable key order)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
