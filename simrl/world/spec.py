"""World specs: the YAML files in ``worlds/`` that say what a generated world looks like.

A spec is validated once, here, by pydantic; every field has one help text (its ``description``),
unknown fields are rejected, and impossible combinations are caught with a message that says how to
fix them. :func:`load_spec` turns any validation problem into a :class:`~simrl.errors.SpecError`
naming the field.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simrl.config import validate_mapping
from simrl.errors import SpecError
from simrl.world.schema import EntityType

_Strict = ConfigDict(extra="forbid", frozen=True)


class Range(BaseModel):
    """An inclusive integer range ``[min, max]``."""

    model_config = _Strict
    min: int = Field(ge=0, description="Smallest value (inclusive).")
    max: int = Field(ge=0, description="Largest value (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max}); swap them")
        return self


class RelationSpec(BaseModel):
    """How densely entities are connected."""

    model_config = _Strict
    founders_per_organization: Range = Field(
        default=Range(min=1, max=2), description="Founders per organization (1-3).")
    memberships_per_person: Range = Field(
        default=Range(min=0, max=2), description="Organizations each person is a member of.")
    participants_per_event: Range = Field(
        default=Range(min=2, max=6), description="People who took part in each event.")
    acquisition_rate: float = Field(
        default=0.15, ge=0, le=0.9, description="Fraction of organizations acquired by another one.")
    ceo_term_years: Range = Field(
        default=Range(min=3, max=14), description="Length of one chief-executive term, in years.")
    death_rate: float = Field(
        default=0.25, ge=0, le=1, description="Fraction of people born over 70 years ago who have died.")
    publisher_rate: float = Field(
        default=0.6, ge=0, le=1, description="Fraction of creative works with a publishing organization.")
    organizer_rate: float = Field(
        default=0.6, ge=0, le=1, description="Fraction of events organized by an organization.")

    @model_validator(mode="after")
    def _bounds(self) -> RelationSpec:
        if not 1 <= self.founders_per_organization.min <= self.founders_per_organization.max <= 3:
            raise ValueError("founders_per_organization must lie within 1..3 (every organization has a founder)")
        if self.participants_per_event.max < 1:
            raise ValueError("participants_per_event.max must be at least 1")
        if self.ceo_term_years.min < 1:
            raise ValueError("ceo_term_years.min must be at least 1 year")
        return self


class TaskCount(BaseModel):
    """How many tasks of one type: ``max(min, per_1k_entities * entities / 1000)``."""

    model_config = _Strict
    per_1k_entities: float = Field(ge=0, description="Tasks per 1,000 entities.")
    min: int = Field(default=0, ge=0, description="Lower bound on the count, for small worlds.")


class TaskSpec(BaseModel):
    """Which tasks to generate."""

    model_config = _Strict
    qa: TaskCount = Field(default=TaskCount(per_1k_entities=80, min=30),
                          description="Multi-hop questions (1-4 hops).")
    table: TaskCount = Field(default=TaskCount(per_1k_entities=10, min=8),
                             description="WideSearch-style table requests.")
    records: TaskCount = Field(default=TaskCount(per_1k_entities=15, min=10),
                               description="Tasks done through the world's record tools.")
    max_hops: int = Field(default=4, ge=1, le=4, description="Longest relation path of a qa task (1-4).")
    table_rows: Range = Field(default=Range(min=2, max=25), description="Rows of a table task's answer.")
    page_size: int = Field(default=10, ge=1, le=1000,
                           description="Default page size of the record tools (records tasks use it to "
                                       "make answers that span several pages).")


class SplitSpec(BaseModel):
    """Train/dev/test fractions (by task) and held-out worlds (by seed)."""

    model_config = _Strict
    train: float = Field(default=0.7, ge=0, le=1, description="Fraction of tasks in the train split.")
    dev: float = Field(default=0.15, ge=0, le=1, description="Fraction of tasks in the dev split.")
    test: float = Field(default=0.15, ge=0, le=1, description="Fraction of tasks in the test split.")
    heldout_seeds: list[int] = Field(
        default_factory=list,
        description="World seeds kept for evaluation: a world generated with one of them puts every "
                    "task in `test` and is marked held-out in its manifest.")

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitSpec:
        total = self.train + self.dev + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + dev + test must sum to 1 (got {total:g}); adjust the fractions")
        return self


class CorpusSpec(BaseModel):
    """What pages to render besides one page per entity."""

    model_config = _Strict
    list_pages: bool = Field(default=True, description="Render list pages (organizations per city, ...).")
    news: bool = Field(default=True, description="Render dated news items (acquisitions, appointments).")
    domain: str = Field(default="", pattern=r"^[a-z0-9-]*$",
                        description="Fictional site name used in URLs (`https://www.DOMAIN.example/`); "
                                    "empty: derived from the spec name.")


_DEFAULT_MIX = {
    EntityType.country: 0.01, EntityType.city: 0.08, EntityType.person: 0.36,
    EntityType.organization: 0.13, EntityType.product: 0.18, EntityType.event: 0.10,
    EntityType.creative_work: 0.14,
}
_MIN_PER_TYPE = {EntityType.country: 2, EntityType.city: 3, EntityType.person: 10,
                 EntityType.organization: 3}


class WorldSpec(BaseModel):
    """A world spec (``worlds/*.yaml``): the shape of a fictional world, not its content.

    The content comes from the seed: the same spec, seed and simrl version give byte-identical files.
    """

    model_config = _Strict
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$",
                      description="Short name (lowercase letters, digits, '-', '_'); used in task ids.")
    description: str = Field(default="", description="What this world is for.")
    entities: int = Field(default=2000, ge=30, le=5_000_000,
                          description="Total number of entities (overridden by --entities).")
    mix: dict[EntityType, float] = Field(
        default_factory=lambda: dict(_DEFAULT_MIX),
        description="Share of each entity type; normalised to sum to 1. Types left out get none, "
                    "except that country, city, person and organization are always present.")
    locale: str = Field(default="en_US", description="Faker locale for people's names.")
    reference_date: dt.date = Field(default=dt.date(2025, 12, 31),
                                    description="The world's 'today': nothing happens after it.")
    start_year: int = Field(default=1900, description="Earliest birth year of a person.")
    relations: RelationSpec = Field(default_factory=RelationSpec, description="Relation densities.")
    corpus: CorpusSpec = Field(default_factory=CorpusSpec, description="Corpus rendering options.")
    tasks: TaskSpec = Field(default_factory=TaskSpec, description="Task counts and shapes.")
    splits: SplitSpec = Field(default_factory=SplitSpec, description="Train/dev/test and held-out seeds.")

    @model_validator(mode="after")
    def _possible(self) -> WorldSpec:
        if any(v < 0 for v in self.mix.values()):
            raise ValueError("mix shares must be >= 0")
        if sum(self.mix.values()) <= 0:
            raise ValueError("mix shares sum to 0; give at least one entity type a positive share")
        span = self.reference_date.year - self.start_year
        if span < 80:
            raise ValueError(
                f"start_year {self.start_year} leaves only {span} years before reference_date "
                f"{self.reference_date}; lifetimes, companies and acquisitions need at least 80 - "
                "use an earlier start_year")
        if self.entities < sum(_MIN_PER_TYPE.values()) + 8:
            raise ValueError("entities is too small to hold every required type; use at least 30")
        return self

    @classmethod
    def entity_bounds(cls) -> tuple[int, int]:
        """``(least, most)`` entities a world may have: the bounds of the ``entities`` field, read from it
        so ``--entities`` and a spec's own ``entities`` share one limit.

        >>> WorldSpec.entity_bounds()
        (30, 5000000)
        """
        meta = cls.model_fields["entities"].metadata
        return (next(m.ge for m in meta if hasattr(m, "ge")), next(m.le for m in meta if hasattr(m, "le")))

    def type_counts(self, entities: int | None = None) -> dict[EntityType, int]:
        """Entities per type for a world of ``entities`` entities (default: the spec's count).

        Required types get their minimum first; the rest is shared by the normalised ``mix`` (largest
        remainder), so the counts sum to exactly ``entities``. Returns a dict in the
        fixed generation order (country, city, person, organization, product, event, creative_work).
        """
        n = self.entities if entities is None else entities
        total = sum(self.mix.values())
        minimum = {t: _MIN_PER_TYPE.get(t, 0) for t in EntityType}
        free = n - sum(minimum.values())
        raw = {t: self.mix.get(t, 0.0) / total * free for t in EntityType}
        counts = {t: minimum[t] + int(raw[t]) for t in EntityType}
        # largest remainder: hand out what flooring left, so the counts sum to exactly n
        by_remainder = sorted(EntityType, key=lambda t: (-(raw[t] - int(raw[t])), list(EntityType).index(t)))
        for t in by_remainder[: n - sum(counts.values())]:
            counts[t] += 1
        return counts


def parse_spec(data: object, source: str = "spec") -> WorldSpec:
    """Validate a parsed YAML mapping as a :class:`WorldSpec`.

    Raises:
        SpecError: with one line per problem, each naming the field (``tasks.qa.min: ...``).
    """
    return validate_mapping(WorldSpec, data, source=source, what="world spec",
                            example="`simrl world generate --help` and worlds/default.yaml")


def load_spec(path: str | Path) -> WorldSpec:
    """Read and validate a world spec YAML file, by path or shipped name (``tiny``, see
    :func:`simrl.assets.resolve`).

    Raises:
        SpecError: the file is missing, is not YAML, or fails validation (the message names the field).
    """
    from simrl.assets import not_found, resolve

    p = resolve(path, "world")
    if not p.is_file():
        raise SpecError(not_found(path, "world"))
    from simrl.config import load_mapping

    data = load_mapping(p, "world spec")
    return parse_spec(data, source=str(p))
