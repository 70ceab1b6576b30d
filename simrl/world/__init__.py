"""Fictional worlds: a typed knowledge graph, its corpus and its verifiable tasks.

``generate_world(spec, seed, out)`` is the one entry point that runs the pipeline
(graph -> checks -> corpus -> tasks -> files); the ``load_*`` functions read a world folder back.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from simrl.errors import SimrlError
from simrl.world.checks import check_world
from simrl.world.corpus import render_corpus
from simrl.world.graph import build_graph
from simrl.world.index import WorldIndex
from simrl.world.io import (
    check_out,
    iter_documents,
    load_checks,
    load_graph,
    load_instructions,
    load_manifest,
    load_tasks,
    spec_to_yaml,
    verify_files,
    write_world,
)
from simrl.world.schema import Manifest
from simrl.world.spec import WorldSpec, load_spec, parse_spec
from simrl.world.tasks import TaskContext, build_tasks
from simrl.world.templates import ALL_TEMPLATES

STAGES = ("graph", "checks", "corpus", "tasks", "write")
"""The stages :func:`generate_world` reports through its ``progress`` callback, in order."""


def entity_count(spec: WorldSpec, seed: int, entities: int | None = None) -> int:
    """The entity count a world of ``spec`` at ``seed`` gets: ``entities`` or the spec's own, checked.

    Raises:
        SimrlError: ``seed`` below 0, or the count outside :meth:`WorldSpec.entity_bounds`.
    """
    if seed < 0:
        raise SimrlError(f"--seed must be >= 0 (got {seed})")
    n = spec.entities if entities is None else entities
    least, most = WorldSpec.entity_bounds()
    if not least <= n <= most:
        raise SimrlError(f"--entities must be between {least} and {most:,}, the bounds of a spec's "
                         f"`entities` (got {n:,})")
    return n


def generate_world(spec: WorldSpec, seed: int, out: str | Path, *, entities: int | None = None,
                   graphml: bool = False, force: bool = False,
                   progress: Callable[[str], None] | None = None) -> Manifest:
    """Generate a world and write it to ``out``.

    Args:
        spec: a validated spec (see :func:`load_spec`).
        seed: world seed (>= 0). Same spec + seed + simrl version -> byte-identical files.
        out: the world folder to write (created; replaced only with ``force``).
        entities: total entity count, overriding ``spec.entities``.
        graphml: also write ``graph.graphml``.
        force: replace an existing world in ``out``.
        progress: called with each stage name of :data:`STAGES` as it starts.

    Returns:
        The written :class:`Manifest`.

    Raises:
        SimrlError: bad arguments, an unusable ``out``, or a world that fails its constraint checks
            (exit code 1: a bug, since worlds are consistent by construction; the folder is still written).
    """
    n = entity_count(spec, seed, entities)
    check_out(Path(out), force=force)  # before minutes of generation
    step = progress or (lambda stage: None)
    step("graph")
    graph = build_graph(spec, seed, n)
    ix = WorldIndex(graph)
    step("checks")
    report = check_world(ix)
    step("corpus")
    corpus = render_corpus(ix, spec.corpus.domain or spec.name.replace("_", "-"),
                           lists=spec.corpus.list_pages, news=spec.corpus.news)
    step("tasks")
    heldout = seed in spec.splits.heldout_seeds
    ctx = TaskContext(ix=ix, corpus=corpus, spec=spec, rng=random.Random(f"simrl-tasks-{seed}"))
    tasks, instructions = build_tasks(ctx, ALL_TEMPLATES, n, seed, heldout)
    step("write")
    manifest = write_world(Path(out), spec_yaml=spec_to_yaml(spec), spec_name=spec.name, seed=seed,
                           heldout=heldout, graph=graph, documents=corpus.documents, tasks=tasks,
                           instructions=instructions, checks=report, graphml=graphml, force=force)
    if not report.passed:
        failed = ", ".join(r.name for r in report.results if not r.passed)
        raise SimrlError(f"world written to {out} but failed constraint checks: {failed} "
                         "(this is a bug in simrl; see checks.json)", exit_code=1)
    return manifest


__all__ = ["STAGES", "WorldIndex", "WorldSpec", "check_out", "entity_count", "generate_world", "iter_documents", "load_checks",
           "load_graph", "load_instructions", "load_manifest", "load_spec", "load_tasks", "parse_spec",
           "verify_files"]
