"""Verifiable tasks of a world: multi-hop questions, WideSearch-style tables, record tasks.

Every task carries its gold answer and the evidence (entity and edge ids) that supports it, and has a
:class:`~simrl.world.schema.SimulationInstruction` with the facts a world model needs to render the
world consistently for that task. Templates are small functions over the
:class:`~simrl.world.index.WorldIndex` that return a :class:`Draft` or ``None`` when a start entity
does not fit (e.g. a product whose maker has two founders cannot ask "where was its founder born").
The templates of each type live in :mod:`simrl.world.templates`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from simrl.world.corpus import Corpus, long_date
from simrl.world.index import WorldIndex
from simrl.world.schema import (
    RELATIONS,
    EntityType,
    Evidence,
    QAGold,
    RecordsGold,
    SimulationInstruction,
    TableGold,
    Task,
)
from simrl.world.spec import WorldSpec


@dataclass
class Draft:
    """A task before it gets an id and a split.

    ``facts`` are extra fact sentences for the simulation instruction; the sentences of every evidence
    edge are added automatically.
    """

    prompt: str
    gold: QAGold | TableGold | RecordsGold
    reference: str
    entity_ids: list[str]
    edge_ids: list[str]
    hops: int
    difficulty: str
    facts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Template:
    """A task template: name, the entity type it starts from, and ``make(ctx, start) -> Draft | None``."""

    name: str
    start: EntityType
    hops: int
    make: Callable[[TaskContext, str], Draft | None]
    size: Callable[[TaskContext, str], int] | None = None
    """Optional answer-set size of a start entity: half the quota then goes to the largest sets
    (so that record answers span several result pages)."""


@dataclass
class TaskContext:
    """What templates read: the world index, the corpus URL maps, the spec and a seeded RNG."""

    ix: WorldIndex
    corpus: Corpus
    spec: WorldSpec
    rng: random.Random

    def edge_fact(self, edge_id: str) -> str:
        """One sentence stating an edge, with its dates (``"A was chief executive of B from ... to ..."``)."""
        u, v, d = self.ix.edges[edge_id]
        text = f"{self.ix.name(u)} {RELATIONS[d['relation']].phrase} {self.ix.name(v)}"
        if d.get("date"):
            text += f" on {long_date(d['date'])}"
        if d.get("start"):
            text += f" from {long_date(d['start'])}" + (f" to {long_date(d['end'])}" if d.get("end") else "")
        return text + "."

    def entity_fact(self, nid: str) -> str:
        """One sentence with an entity's type and attributes."""
        node = self.ix.node(nid)
        attrs = ", ".join(f"{k} {v}" for k, v in node.items() if k not in ("type", "name") and v is not None)
        return f"{node['name']} is a {node['type'].replace('_', ' ')} ({attrs})."


def date_aliases(iso: str) -> list[str]:
    """Accepted spellings of an ISO date: ``["March 4, 1987", "4 March 1987"]``."""
    long = long_date(iso)
    month, day, year = long.replace(",", "").split(" ")
    return [long, f"{day} {month} {year}"]


def name_aliases(ix: WorldIndex, nid: str) -> list[str]:
    """Accepted variants of an entity name (organizations without their legal suffix)."""
    name = ix.name(nid)
    if ix.node(nid)["type"] == EntityType.organization.value:
        for suffix in (" Inc", " Group", " Ltd", " LLC", " PLC", " and Sons", " Holdings", " Works"):
            if name.endswith(suffix):
                return [name[: -len(suffix)]]
    return []


def split_of(task_id: str, spec: WorldSpec, heldout: bool) -> str:
    """Deterministic split of a task from the sha256 of its id (held-out worlds: always ``test``)."""
    if heldout:
        return "test"
    u = int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < spec.splits.train:
        return "train"
    return "dev" if u < spec.splits.train + spec.splits.dev else "test"


def task_count(spec: WorldSpec, kind: str, entities: int) -> int:
    """How many tasks of ``kind`` (``qa``/``table``/``records``) a world of ``entities`` gets."""
    c = getattr(spec.tasks, kind)
    return max(c.min, round(c.per_1k_entities * entities / 1000))


def _sample(ctx: TaskContext, templates: list[Template], n: int) -> list[tuple[Template, Draft]]:
    """Up to ``n`` drafts spread evenly over ``templates``, each start entity used once per template."""
    if n <= 0 or not templates:
        return []
    out: list[tuple[Template, Draft]] = []
    quota = [n // len(templates) + (1 if i < n % len(templates) else 0) for i in range(len(templates))]
    spare = 0
    for tpl, want in zip(templates, quota):
        want += spare
        pool = ctx.ix.by_type[tpl.start]
        got = 0
        order = ctx.rng.sample(pool, k=min(len(pool), max(4 * want, 64)))
        if tpl.size is not None:
            biggest = sorted(pool, key=lambda nid: (-tpl.size(ctx, nid), nid))[: (want + 1) // 2]
            taken = set(biggest)
            order = biggest + [nid for nid in order if nid not in taken]
        for nid in order:
            if got >= want:
                break
            draft = tpl.make(ctx, nid)
            if draft is not None:
                out.append((tpl, draft))
                got += 1
        spare = want - got  # a template short of candidates hands its quota to the next one
    return out


def build_tasks(ctx: TaskContext, kinds: dict[str, list[Template]], entities: int, seed: int,
                heldout: bool) -> tuple[list[Task], list[SimulationInstruction]]:
    """Generate every task of a world and its simulation instruction.

    Args:
        ctx: the task context (index, corpus, spec, seeded RNG).
        kinds: task type -> its templates.
        entities: the world's entity count (task counts scale with it, see :func:`task_count`).
        seed: the world seed (part of each task id).
        heldout: whether the world is held out (every task then goes to ``test``).

    Returns:
        ``(tasks, instructions)``, aligned, in id order.
    """
    tasks, instructions = [], []
    for kind, templates in kinds.items():
        templates = [t for t in templates if t.hops <= ctx.spec.tasks.max_hops]
        for i, (tpl, draft) in enumerate(_sample(ctx, templates, task_count(ctx.spec, kind, entities))):
            task_id = f"{ctx.spec.name}-{seed}-{kind}-{i:05d}"
            tasks.append(Task(
                task_id=task_id, type=kind, split=split_of(task_id, ctx.spec, heldout), prompt=draft.prompt,
                gold=draft.gold, evidence=Evidence(entity_ids=draft.entity_ids, edge_ids=draft.edge_ids),
                hops=draft.hops, difficulty=draft.difficulty, template=tpl.name))
            instructions.append(_instruction(ctx, task_id, draft))
    return tasks, instructions


def _instruction(ctx: TaskContext, task_id: str, draft: Draft) -> SimulationInstruction:
    facts = [ctx.edge_fact(e) for e in draft.edge_ids] + draft.facts
    facts += [ctx.entity_fact(n) for n in draft.entity_ids[:8]]
    pages = [ctx.corpus.entity_url[n] for n in draft.entity_ids if n in ctx.corpus.entity_url]
    pages += [ctx.corpus.edge_url[e] for e in draft.edge_ids if e in ctx.corpus.edge_url]
    return SimulationInstruction(task_id=task_id, target_query=draft.prompt, reference_answer=draft.reference,
                                 facts=list(dict.fromkeys(facts)), pages=list(dict.fromkeys(pages)))


def pages_needed(n_results: int, page_size: int) -> int:
    """Result pages a list of ``n_results`` spans at ``page_size`` per page (at least 1)."""
    return max(1, math.ceil(n_results / page_size))
