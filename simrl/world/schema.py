"""The world's data contract: entity and relation types, documents and tasks.

Everything a world folder holds is described here as frozen pydantic models, so that every later
stage (environments, perturbations, training, evaluation) reads worlds through one definition.
Behaviour lives elsewhere (``generate``, ``corpus``, ``tasks``, ``checks``).

Files of a world folder (written by :func:`simrl.world.io.write_world`):

========================  ==================================================================
``manifest.json``         :class:`Manifest`: version, spec, seed, counts, sha256 of each file
``spec.yaml``             the resolved :class:`~simrl.world.spec.WorldSpec`
``graph.json``            the knowledge graph as networkx node-link JSON (``edges`` key)
``corpus.jsonl``          one :class:`Document` per line
``tasks.jsonl``/``.parquet``  one :class:`Task` per line / row (nested fields as JSON strings)
``simulation.jsonl``      one :class:`SimulationInstruction` per task (never shown to a policy)
``checks.json``           the constraint checks (:class:`CheckReport`)
========================  ==================================================================
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simrl.choices import Split


class EntityType(str, Enum):
    """Entity types of a world graph; node ids are ``"{type}:{index:06d}"``."""

    country = "country"
    city = "city"
    person = "person"
    organization = "organization"
    product = "product"
    event = "event"
    creative_work = "creative_work"


class RelationType(BaseModel):
    """A typed relation: ``domain -> range`` with cardinality on both ends.

    Attributes:
        name: relation name, also the edge attribute ``relation``.
        domain: entity type of the edge source.
        range: entity type of the edge target.
        max_out: most edges of this relation one source may have (``None``: unbounded).
        max_in: most edges of this relation one target may have (``None``: unbounded);
            for temporal relations the bound holds at any one time.
        min_out: fewest edges each source must have (1 = mandatory, e.g. a city's country).
        temporal: whether edges carry ``start``/``end`` dates (ISO ``YYYY-MM-DD``; ``end`` may be null).
        dated: whether edges carry one ``date`` (ISO), e.g. an acquisition.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    domain: EntityType
    range: EntityType
    max_out: int | None = None
    max_in: int | None = None
    min_out: int = 0
    temporal: bool = False
    dated: bool = False
    phrase: str = Field(description="English verb phrase: '{source} PHRASE {target}'.")


E = EntityType
RELATIONS: dict[str, RelationType] = {
    r.name: r
    for r in [
        RelationType(name="located_in", domain=E.city, range=E.country, max_out=1, min_out=1,
                     phrase="is located in"),
        RelationType(name="capital_of", domain=E.city, range=E.country, max_out=1, max_in=1,
                     phrase="is the capital of"),
        RelationType(name="born_in", domain=E.person, range=E.city, max_out=1, min_out=1,
                     phrase="was born in"),
        RelationType(name="founded_by", domain=E.organization, range=E.person, max_out=3, min_out=1,
                     phrase="was founded by"),
        RelationType(name="headquartered_in", domain=E.organization, range=E.city, max_out=1, min_out=1,
                     phrase="is headquartered in"),
        RelationType(name="ceo_of", domain=E.person, range=E.organization, max_in=1, temporal=True,
                     phrase="was chief executive of"),
        RelationType(name="member_of", domain=E.person, range=E.organization, temporal=True,
                     phrase="was a member of"),
        RelationType(name="produced_by", domain=E.product, range=E.organization, max_out=1, min_out=1,
                     phrase="is produced by"),
        RelationType(name="acquired", domain=E.organization, range=E.organization, max_in=1, dated=True,
                     phrase="acquired"),
        RelationType(name="held_in", domain=E.event, range=E.city, max_out=1, min_out=1,
                     phrase="was held in"),
        RelationType(name="participated_in", domain=E.person, range=E.event,
                     phrase="participated in"),
        RelationType(name="organized_by", domain=E.event, range=E.organization, max_out=1,
                     phrase="was organized by"),
        RelationType(name="created_by", domain=E.creative_work, range=E.person, max_out=1, min_out=1,
                     phrase="was created by"),
        RelationType(name="published_by", domain=E.creative_work, range=E.organization, max_out=1,
                     phrase="was published by"),
    ]
}
"""The relation catalogue (domain, range, cardinality) every world uses."""


class Document(BaseModel):
    """One page of a world's corpus (a line of ``corpus.jsonl``).

    Attributes:
        doc_id: stable id: ``"page:{entity_id}"``, ``"list:{...}"`` or ``"news:{n:06d}"``.
        url: stable fictional URL under the reserved ``.example`` domain (RFC 2606).
        title: page title.
        kind: ``entity`` (one entity), ``list`` (several entities), ``news`` (a dated item).
        text: the page as markdown (infobox, prose, links to related pages).
        date: ISO date of a news item, else ``None``.
        entity_ids: ids of the entities the page states facts about.
    """

    model_config = ConfigDict(frozen=True)

    doc_id: str
    url: str
    title: str
    kind: Literal["entity", "list", "news"]
    text: str
    date: str | None = None
    entity_ids: list[str]


class Evidence(BaseModel):
    """What supports a task's gold answer: node ids and edge ids (``"e:{n}"``) of the graph."""

    model_config = ConfigDict(frozen=True)

    entity_ids: list[str] = Field(default_factory=list)
    edge_ids: list[str] = Field(default_factory=list)


class QAGold(BaseModel):
    """Gold answer of a ``qa`` task: the answer and accepted aliases (scored by exact match / F1)."""

    model_config = ConfigDict(frozen=True)

    answer: str
    aliases: list[str] = Field(default_factory=list)


class TableColumn(BaseModel):
    """One column of a WideSearch-style table task.

    ``preprocess`` and ``metric`` follow WideSearch's evaluation (docs/design.md §4): preprocess one of
    ``norm_str``, ``extract_number``, ``norm_date``, ``none``; metric one of ``exact_match``,
    ``number_near`` (``|r - t| <= |t| * criterion``, 0.1 when unset), ``date_near`` (within 31 days;
    upstream passes ``criterion`` to ``number_near`` only, so it is ignored here), ``url_match``,
    ``in_match`` (the response inside the gold cell), ``alias_match`` (``norm_str`` match against the
    cell or any alias: the fictional-world stand-in for upstream's ``llm_judge``). Scored by
    :mod:`simrl.reward.widesearch_cells`.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    preprocess: Literal["norm_str", "extract_number", "norm_date", "none"] = "norm_str"
    metric: Literal["exact_match", "number_near", "date_near", "url_match", "in_match", "alias_match"] = (
        "exact_match"
    )
    criterion: float | None = None


class TableGold(BaseModel):
    """Gold answer of a ``table`` task (WideSearch layout).

    Attributes:
        columns: required columns, in order.
        unique_columns: the columns that identify a row (rows are joined on them).
        rows: gold rows, each a mapping column name -> cell text.
        aliases: per column, per gold cell text, extra accepted spellings (for ``alias_match``).
    """

    model_config = ConfigDict(frozen=True)

    columns: list[TableColumn]
    unique_columns: list[str]
    rows: list[dict[str, str]]
    aliases: dict[str, dict[str, list[str]]] = Field(default_factory=dict)


class StateCheck(BaseModel):
    """One assertion on the final record state after a write task: ``record[field] == value``."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    field: str
    value: str | int | float | None


class RecordsGold(BaseModel):
    """Gold of a ``records`` task.

    Attributes:
        kind: ``read`` (answer a question from records) or ``write`` (change records).
        answer: for reads, the expected answer text (scored like ``qa``); ``None`` for writes.
        aliases: accepted spellings of ``answer``.
        final_state: for writes, assertions checked on the final record state.
        min_pages: how many result pages of the record tools the answer spans at the default
            page size (> 1 for the tasks that need pagination).
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["read", "write"]
    answer: str | None = None
    aliases: list[str] = Field(default_factory=list)
    final_state: list[StateCheck] = Field(default_factory=list)
    min_pages: int = 1


class BFCLGold(BaseModel):
    """Gold of a ``bfcl`` task: one BFCL v4 multi-turn entry (bfcl-eval's ``data/BFCL_v4_<category>.json``
    and ``data/possible_answer/``), read by the ``bfcl`` environment and never shown to a policy.

    Attributes:
        entry_id: the BFCL id (``multi_turn_base_0``); BFCL's checker derives the category from it.
        category: the BFCL category (``multi_turn_base``, ``multi_turn_miss_func``, ...).
        ground_truth: per user turn, the ground-truth call strings (``"cd(folder='document')"``).
        turns: per user turn, the user's message (turn 0 is the task prompt).
        involved_classes: the BFCL tool classes of the entry (``GorillaFileSystem``, ``TwitterAPI``, ...).
        initial_config: class name -> the scenario passed to the class's ``_load_scenario``.
        missed_function: ``miss_func`` only: turn index (as a string) -> function names held out until then.
        path: BFCL's ``path`` field (the ``Class.method`` names the ground truth uses).
        source: where the entry came from: ``BFCL_v4_<category>.json#<id>``.
    """

    model_config = ConfigDict(frozen=True)

    entry_id: str
    category: str
    ground_truth: list[list[str]]
    turns: list[str]
    involved_classes: list[str]
    initial_config: dict[str, Any]
    missed_function: dict[str, list[str]] = Field(default_factory=dict)
    path: list[str] = Field(default_factory=list)
    source: str


class Task(BaseModel):
    """A verifiable task of a world (a line of ``tasks.jsonl``).

    Only :meth:`policy_view` may be shown to a policy: gold, evidence and the simulation instruction
    (stored apart, in ``simulation.jsonl``) never reach it.

    Attributes:
        task_id: ``"{world}-{seed}-{type}-{n:05d}"``.
        type: ``qa``, ``table``, ``records``, ``bfcl`` (a BFCL v4 multi-turn entry), or a type a
            registered environment serves (``EnvSpec.task_types``, scored by its ``score_final``):
            lower-case letters, digits, ``_`` and ``-``, at most 40 characters.
        split: ``train``, ``dev`` or ``test`` (held-out worlds put every task in ``test``).
        prompt: the request the policy sees.
        gold: a :class:`QAGold`, :class:`TableGold`, :class:`RecordsGold` or :class:`BFCLGold` (matching
            ``type``).
        evidence: graph ids that support the gold.
        hops: number of relation hops from the prompt's entity to the answer (qa: 1-4).
        difficulty: ``easy``, ``medium`` or ``hard``.
        template: name of the generator template that made the task.
    """

    model_config = ConfigDict(frozen=True)

    task_id: str
    type: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    split: Split
    prompt: str
    gold: QAGold | TableGold | RecordsGold | BFCLGold
    evidence: Evidence
    hops: int
    difficulty: Literal["easy", "medium", "hard"]
    template: str

    def policy_view(self) -> dict[str, str]:
        """The only part of a task a policy may read: ``{"task_id", "type", "prompt"}``."""
        return {"task_id": self.task_id, "type": self.type, "prompt": self.prompt}


class SimulationInstruction(BaseModel):
    """The facts a world model needs to render a task's world consistently (docs/design.md §1, §4).

    Follows Qwen-AgentWorld's search simulation instruction (target query + reference answer) and
    adds the supporting facts and pages, so a simulated search or record tool shows the same world.
    Kept in ``simulation.jsonl``, apart from the tasks, and never part of a policy's input.

    Attributes:
        task_id: the task it belongs to.
        target_query: the request the simulation must support.
        reference_answer: the answer the simulated content must make findable.
        facts: short sentences, one fact each, in the world's wording.
        pages: URLs of the corpus pages that hold these facts.
    """

    model_config = ConfigDict(frozen=True)

    task_id: str
    target_query: str
    reference_answer: str
    facts: list[str]
    pages: list[str]


class CheckResult(BaseModel):
    """One constraint check of a world: name, whether it passed, violations (up to 20 shown)."""

    name: str
    description: str
    checked: int
    violations: int
    examples: list[str] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no violation was found."""
        return self.violations == 0


class CheckReport(BaseModel):
    """All constraint checks of a world (``checks.json``)."""

    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(r.passed for r in self.results)


class Manifest(BaseModel):
    """``manifest.json`` of a world folder.

    Attributes:
        simrl_version: version of simrl that wrote the world (same spec + seed + version -> same bytes).
        spec_name: the spec's ``name``.
        seed: the world seed.
        heldout: whether the seed is one of the spec's held-out seeds.
        counts: ``entities`` / ``relations`` / ``documents`` per type, ``tasks`` per type and split.
        files: file name -> sha256 hex digest, for every other file of the folder.
    """

    simrl_version: str
    spec_name: str
    seed: int
    heldout: bool
    counts: dict[str, dict[str, int] | dict[str, dict[str, int]]]
    files: dict[str, str]
