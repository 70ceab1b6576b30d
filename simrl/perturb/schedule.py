"""Perturbation schedules: which perturbations, how often, where, and how often over training.

A schedule is a YAML file (``recipes/schedules/*.yaml``) validated once, here, by pydantic: one help
text per field (its ``description``), unknown fields rejected; :func:`load_schedule` turns any
problem into a :class:`~simrl.errors.SpecError` naming the field, like world specs
(``simrl/world/spec.py``).

Each perturbation type gets a *curriculum*: its rate (the probability that it is drawn for an
eligible tool call) as a function of training progress ``p`` in [0, 1]:

===========  ==================================================================================
constant     ``rate``
linear       ``start + (end - start) * p``
cosine       ``start + (end - start) * (1 - cos(pi * p)) / 2``
step         ``values[i]`` where ``i`` = number of ``boundaries`` <= p
exp_ramp     ``start + (end - start) * (base**p - 1) / (base - 1)``, ``base`` = 4: ZeroSearch's noise
             curriculum (Alibaba-NLP/ZeroSearch; docs/design.md §4; their recipes ramp 0 -> 0.5)
===========  ==================================================================================

A number in place of a curriculum is a constant rate. Example::

    name: example
    perturbations:
      partial_response: {rate: {kind: exp_ramp, start: 0.0, end: 0.5}, tools: [list_members]}
      rate_limit: {rate: 0.05, max_per_episode: 2}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from simrl.assets import not_found, resolve, shipped_dir
from simrl.config import validate_mapping
from simrl.errors import SpecError
from simrl.perturb.taxonomy import Perturbation, PerturbationType, perturbation_class

_Strict = ConfigDict(extra="forbid", frozen=True)
_Rate = Annotated[float, Field(ge=0, le=1)]
SHIPPED = shipped_dir("schedule")
"""The folder of the shipped schedules (``gentle``, ``mcpmark``, ``fault-heavy``)."""


def _check(progress: float) -> float:
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"training progress must be in [0, 1], got {progress}")
    return progress


class Constant(BaseModel):
    """The same rate all through training."""

    model_config = _Strict
    kind: Literal["constant"] = "constant"
    rate: _Rate = Field(description="Probability per eligible tool call, in [0, 1].")

    def at(self, progress: float) -> float:
        """The rate at ``progress`` (in [0, 1])."""
        _check(progress)
        return self.rate


class Linear(BaseModel):
    """From ``start`` to ``end`` in a straight line."""

    model_config = _Strict
    kind: Literal["linear"]
    start: _Rate = Field(description="Rate at progress 0.")
    end: _Rate = Field(description="Rate at progress 1.")

    def at(self, progress: float) -> float:
        """``start + (end - start) * p``."""
        return self.start + (self.end - self.start) * _check(progress)


class Cosine(BaseModel):
    """From ``start`` to ``end`` along half a cosine (slow, fast, slow)."""

    model_config = _Strict
    kind: Literal["cosine"]
    start: _Rate = Field(description="Rate at progress 0.")
    end: _Rate = Field(description="Rate at progress 1.")

    def at(self, progress: float) -> float:
        """``start + (end - start) * (1 - cos(pi p)) / 2``."""
        return self.start + (self.end - self.start) * ((1 - math.cos(math.pi * _check(progress))) / 2)


class Step(BaseModel):
    """Piecewise constant: ``values[0]`` before ``boundaries[0]``, ``values[i]`` from ``boundaries[i-1]``."""

    model_config = _Strict
    kind: Literal["step"]
    boundaries: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        min_length=1, description="Progress points in (0, 1), increasing, where the rate changes.")
    values: list[_Rate] = Field(min_length=2, description="Rates: one more than boundaries.")

    @model_validator(mode="after")
    def _shape(self) -> Step:
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(f"values needs one more entry than boundaries ({len(self.boundaries) + 1}), "
                             f"got {len(self.values)}")
        if any(a >= b for a, b in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError("boundaries must increase strictly")
        return self

    def at(self, progress: float) -> float:
        """``values[i]``, ``i`` = how many boundaries are <= progress."""
        return self.values[sum(b <= _check(progress) for b in self.boundaries)]


class ExpRamp(BaseModel):
    """ZeroSearch's exponential ramp: slow at first, steep at the end (base 4)."""

    model_config = _Strict
    kind: Literal["exp_ramp"]
    start: _Rate = Field(description="Rate at progress 0.")
    end: _Rate = Field(description="Rate at progress 1.")
    base: float = Field(default=4.0, gt=0, description="Base b of (b^p - 1)/(b - 1); ZeroSearch uses 4. Not 1.")

    @field_validator("base")
    @classmethod
    def _not_one(cls, base: float) -> float:
        if base == 1:
            raise ValueError("base 1 makes (b^p - 1)/(b - 1) undefined; use kind: linear for a straight ramp")
        return base

    def at(self, progress: float) -> float:
        """``start + (end - start) * (base**p - 1) / (base - 1)``."""
        fraction = (self.base ** _check(progress) - 1) / (self.base - 1)
        return self.start + (self.end - self.start) * fraction


_CURRICULA = ("constant", "linear", "cosine", "step", "exp_ramp")
Curriculum = Annotated[Constant | Linear | Cosine | Step | ExpRamp, Field(discriminator="kind")]
"""A rate over training progress; ``kind`` picks the shape."""


def rate(curriculum: Curriculum, progress: float) -> float:
    """The rate of ``curriculum`` at training ``progress`` in [0, 1].

    >>> round(rate(ExpRamp(kind="exp_ramp", start=0.0, end=0.6), 0.5), 6)  # (4**0.5 - 1) / 3 = 1/3 of the way
    0.2

    Raises:
        ValueError: progress outside [0, 1].
    """
    return curriculum.at(progress)


class TurnWindow(BaseModel):
    """Turns (0 = the first action) in which a perturbation may be applied, both ends included."""

    model_config = _Strict
    first: int = Field(default=0, ge=0, description="First turn (0-based) that may be perturbed.")
    last: int | None = Field(default=None, ge=0, description="Last turn that may be perturbed (null: no end).")

    @model_validator(mode="after")
    def _ordered(self) -> TurnWindow:
        if self.last is not None and self.last < self.first:
            raise ValueError(f"last ({self.last}) is before first ({self.first}); swap them")
        return self

    def contains(self, turn: int) -> bool:
        """Whether ``turn`` is inside the window."""
        return turn >= self.first and (self.last is None or turn <= self.last)


class Entry(BaseModel):
    """How one perturbation type is applied."""

    model_config = _Strict
    rate: Curriculum = Field(description="Probability per eligible tool call over training progress: a number "
                                         "(constant) or {kind: constant|linear|cosine|step|exp_ramp, ...}.")
    tools: list[str] = Field(default_factory=list, description="Tools it targets (empty: every tool).")
    domains: list[str] = Field(default_factory=list,
                               description="Environment ids it targets, e.g. search, mcp-world (empty: every one).")
    turns: TurnWindow = Field(default_factory=TurnWindow, description="Turn window in which it may be applied.")
    max_per_episode: int | None = Field(default=None, ge=0, description="Most applications per episode (null: no cap).")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Parameters of the perturbation type (see `simrl perturb types`).")

    @field_validator("rate", mode="before")
    @classmethod
    def _number_is_constant(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"kind": "constant", "rate": value}
        return value

    def targets(self, tool: str, domain: str, turn: int) -> bool:
        """Whether a call of ``tool`` in environment ``domain`` at ``turn`` is in scope."""
        return ((not self.tools or tool in self.tools) and (not self.domains or domain in self.domains)
                and self.turns.contains(turn))


class Schedule(BaseModel):
    """A perturbation schedule (``recipes/schedules/*.yaml``): per-type rates, targets and caps.

    Draws are deterministic: the same schedule seed, wrapper seed, episode seed, turn and call give
    the same perturbation (:class:`~simrl.perturb.inject.PerturbedEnv`).
    """

    model_config = _Strict
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Short name (lowercase, digits, '-', '_').")
    description: str = Field(default="", description="What the schedule is for.")
    seed: int = Field(default=0, description="Seed of the draws (with the episode seed).")
    allow_unrecoverable: bool = Field(default=False,
                                      description="Allow types an agent cannot recover from (outage).")
    cooldown_calls: int = Field(default=1, ge=0, description="Calls of a tool exempt after it was perturbed, so a "
                                                             "recovery is not itself perturbed (0: back-to-back faults).")
    max_per_episode: int | None = Field(default=None, ge=0,
                                        description="Most perturbations per episode, all types together (null: no cap).")
    perturbations: dict[PerturbationType, Entry] = Field(
        default_factory=dict, description="Perturbation type -> how it is applied (see `simrl perturb types`).")
    _built: dict[PerturbationType, Perturbation] = PrivateAttr(default_factory=dict)
    _entries: dict[int, list[tuple[PerturbationType, Entry, Perturbation]]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _build(self) -> Schedule:
        for kind, entry in self.perturbations.items():
            cls = perturbation_class(kind)
            if not cls.recoverable and not self.allow_unrecoverable:
                raise ValueError(f"perturbations.{kind.value}: an agent cannot recover from {kind.value}; set "
                                 "allow_unrecoverable: true to use it")
            try:
                self._built[kind] = cls.model_validate(entry.params)
            except ValidationError as err:
                e = err.errors()[0]
                where = ".".join(str(p) for p in e["loc"])
                msg = "unknown parameter" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
                raise ValueError(f"perturbations.{kind.value}.params{'.' + where if where else ''}: {msg}") from None
        return self

    def perturbation(self, kind: PerturbationType | str) -> Perturbation:
        """The configured perturbation of ``kind`` (built from its ``params``)."""
        return self._built[PerturbationType(kind)]

    def entries(self) -> list[tuple[PerturbationType, Entry, Perturbation]]:
        """``(type, entry, perturbation)`` of each schedule entry, in schedule order (made once per schedule; do not
        mutate)."""
        got = self._entries.get(id(self.perturbations))  # by the mapping read (a copy may share this memo)
        if got is None:
            got = self._entries[id(self.perturbations)] = [(kind, entry, self.perturbation(kind))
                                                           for kind, entry in self.perturbations.items()]
        return got

    def rates(self, progress: float) -> dict[str, float]:
        """Type -> rate at training ``progress``, in the schedule's order."""
        return {kind.value: entry.rate.at(progress) for kind, entry in self.perturbations.items()}

    @classmethod
    def single(cls, kind: PerturbationType | str, rate: float = 1.0, **options: Any) -> Schedule:
        """A schedule of one type at a constant ``rate``; ``options`` are :class:`Entry` fields
        (``max_per_episode``, ``tools``, ``params``, ...) and ``allow_unrecoverable`` / ``seed`` /
        ``cooldown_calls``."""
        top = {k: options.pop(k) for k in ("allow_unrecoverable", "seed", "cooldown_calls") if k in options}
        kind = PerturbationType(kind)
        return cls(name=f"only-{kind.value}".replace("_", "-"), **top,
                   perturbations={kind: Entry(rate=rate, **options)})


def _schedule_path(parts: list[str]) -> list[str]:
    """Drop a curriculum's tag after ``rate`` (it adds nothing to the field path)."""
    return [p for i, p in enumerate(parts) if not (i and parts[i - 1] == "rate" and p in _CURRICULA)]


def parse_schedule(data: object, source: str = "schedule") -> Schedule:
    """Validate a parsed YAML mapping as a :class:`Schedule`.

    Raises:
        SpecError: one line per problem, each naming the field (``perturbations.rate_limit.rate.end: ...``).
    """
    return validate_mapping(Schedule, data, source=source, what="schedule",
                            example="recipes/schedules/*.yaml", path=_schedule_path)


_LOADED: dict[tuple[str, int, int], Schedule] = {}


def load_schedule(path: str | Path) -> Schedule:
    """Read and validate a schedule YAML file; a bare name (``gentle``) finds a shipped schedule.

    A file read before and unchanged since (same modification time and size) is not parsed again: the
    trainer builds its environments from the schedule at every step (the schedule is frozen, so it is shared).

    Raises:
        SpecError: the file is missing, is not YAML, or fails validation (the message names the field).
    """
    p = resolve(path, "schedule")
    if not p.is_file():
        raise SpecError(not_found(path, "schedule"))
    stat = p.stat()
    key = (str(p), stat.st_mtime_ns, stat.st_size)
    if (got := _LOADED.get(key)) is not None:
        return got
    from simrl.config import load_mapping

    data = load_mapping(p, "schedule")
    if len(_LOADED) >= 256:
        _LOADED.clear()
    _LOADED[key] = schedule = parse_schedule(data, source=str(p))
    return schedule
