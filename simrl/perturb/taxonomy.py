"""The perturbation taxonomy: what can go wrong with a tool call, and how an agent recovers.

Every perturbation is a small frozen pydantic model (its fields are its parameters, validated from a
schedule's ``params``) that overrides ONE hook, :meth:`Perturbation.apply`, in the spirit of
Gymnasium's one-hook wrappers (``gymnasium/wrappers/transform_reward.py``). Each declares its
``kind``, how an agent ``recovery``-s from it and whether it is ``recoverable`` at all; schedules use
only recoverable kinds unless they set ``allow_unrecoverable``.

Two ways to apply one (docs/design.md §1, controllable simulation):

- **inject**: :meth:`Perturbation.apply` rewrites a tool result in code (any environment, real or
  simulated: guaranteed). ``phase = "before"`` kinds (errors) are applied *instead of* the call, so
  an error on a write tool means the write did not happen.
- **control**: :meth:`Perturbation.control_instruction` is text for the world model's input (never
  the policy's), and :meth:`Perturbation.complies` checks the predicted observation; on
  non-compliance the caller retries or falls back to inject.

The concrete kinds live in :mod:`simrl.perturb.faults` (errors), :mod:`simrl.perturb.content`
(held-back or emptied results) and :mod:`simrl.perturb.reshape` (drifted or cut results);
:func:`perturbation_class` finds one by kind.
"""

from __future__ import annotations

import abc
import hashlib
import json
import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from simrl.types import ToolCall, ToolResult


class PerturbationType(str, Enum):
    """The kinds of perturbation (a schedule's keys)."""

    partial_response = "partial_response"
    forced_pagination = "forced_pagination"
    server_error = "server_error"
    rate_limit = "rate_limit"
    timeout = "timeout"
    empty_result = "empty_result"
    schema_drift = "schema_drift"
    validation_error = "validation_error"
    oversized_response = "oversized_response"
    outage = "outage"


class Recovery(str, Enum):
    """How an agent recovers from a perturbation."""

    retry = "retry"  # send the same call again (after the retry-after, if one is given)
    paginate = "paginate"  # follow the continuation cursor / page the result says
    requery = "requery"  # ask again, the query changed (rephrased, a filter dropped)
    narrow = "narrow"  # ask for less: a smaller limit, a more specific query
    adapt = "adapt"  # parse the result tolerantly (renamed or extra fields)
    fix_arguments = "fix_arguments"  # retry with the argument the error names
    none = "none"  # not recoverable: answer with what is known


@dataclass
class Continuation:
    """Content a perturbation held back, served by the wrapper when the agent asks for it."""

    tool: str
    content: str


@dataclass
class EpisodeState:
    """Per-episode memory of the inject wrapper, shared with the perturbations of that episode.

    Attributes:
        continuations: held-back content by continuation token (a ``cursor`` value, or
            :func:`~simrl.perturb.formats.page_key` of a ``page`` call).
        exempt: call keys (:func:`~simrl.perturb.formats.call_key`) whose next repetition passes
            unperturbed ("repeat the query to get the full list").
        sticky: tool name -> the perturbation that applies to every later call of that tool.
    """

    continuations: dict[str, Continuation] = field(default_factory=dict)
    exempt: set[str] = field(default_factory=set)
    sticky: dict[str, Any] = field(default_factory=dict)


@dataclass
class PerturbContext:
    """Where a perturbation is applied: the call, its turn, the tool's schema, a seed for details.

    Attributes:
        call: the tool call being perturbed.
        turn: index of the turn in the trajectory (0 = the first action).
        call_index: index of the call within the turn's action.
        key: a string seeding the perturbation's random details (:meth:`rng`): the same key gives
            the same retry-after and cut, so an instruction and its compliance check agree; its last
            ``:``-field names the perturbation kind, which (with the call) decides the continuation token
            (:meth:`token`).
        tool_schema: the tool's OpenAI function schema, when known (from the environment's reset).
        env_id: the environment (the schedule's *domain*).
        state: the episode's :class:`EpisodeState` (continuations are stored there).
    """

    call: ToolCall
    turn: int = 0
    call_index: int = 0
    key: str = "0"
    tool_schema: dict[str, Any] | None = None
    env_id: str = ""
    state: EpisodeState = field(default_factory=EpisodeState)

    def rng(self) -> random.Random:
        """A fresh ``random.Random`` seeded from :attr:`key` (sha256), never the global generator."""
        return random.Random(int.from_bytes(hashlib.sha256(self.key.encode()).digest()[:8], "big"))

    def token(self) -> str:
        """A continuation token for this call: ``simrl-cont-`` and 12 hex digits of the call (name, arguments) and
        the perturbation kind (the last field of :attr:`key`), not of the episode.

        As a real server's cursor encodes the query and the position, two episodes that made the same calls see
        the same pages, token included: their states are equal, which step-level credit needs (GiGPO's anchor
        states, :mod:`simrl.trainers.credit`; a per-episode token made every state after a cursor unique).
        """
        call = json.dumps([self.call.name, self.call.arguments], sort_keys=True, default=str)
        kind = self.key.rsplit(":", 1)[-1]
        return "simrl-cont-" + hashlib.sha256(f"{call}:{kind}:token".encode()).hexdigest()[:12]


class Perturbation(BaseModel):
    """Base class: one kind of perturbation; its pydantic fields are its parameters.

    Subclasses set the class attributes and implement the three abstract hooks: :meth:`apply`
    (inject mode), :meth:`control_instruction` and :meth:`complies` (control mode).

    Class attributes:
        kind: the :class:`PerturbationType`.
        recovery: how an agent recovers.
        recoverable: False for kinds an agent cannot recover from (used only when allowed).
        phase: ``"before"``: decided and applied instead of the call (errors: the call, and any
            write it would make, does not happen); ``"after"``: applied to the call's result.
        sticky: once applied to a tool, it applies to every later call of that tool in the episode.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[PerturbationType]
    recovery: ClassVar[Recovery]
    recoverable: ClassVar[bool] = True
    phase: ClassVar[Literal["before", "after"]] = "after"
    sticky: ClassVar[bool] = False

    def fits(self, call: ToolCall, ctx: PerturbContext) -> bool:
        """Whether this kind can apply to ``call`` at all, before seeing its result (default: yes)."""
        return True

    @abc.abstractmethod
    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult | None:
        """The perturbed result of ``call``, or ``None`` when this kind does not fit ``result``.

        ``result`` is ``None`` for ``phase = "before"`` kinds applied instead of the call. May store
        held-back content in ``ctx.state`` (continuations).
        """

    @abc.abstractmethod
    def control_instruction(self, ctx: PerturbContext) -> str:
        """Text for the world model's input asking it to produce this perturbation for ``ctx.call``."""

    @abc.abstractmethod
    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """Whether a predicted observation shows this perturbation (control mode's check)."""

    @classmethod
    def describe(cls) -> str:
        """The first line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0]


def error_result(call: ToolCall, text: str) -> ToolResult:
    """An ``is_error`` result of ``call`` with ``text``."""
    return ToolResult(name=call.name, content=text, is_error=True, call_id=call.call_id)


def replace_content(result: ToolResult, text: str) -> ToolResult:
    """``result`` with new content (same name, call id and error flag)."""
    return result.model_copy(update={"content": text})


_CLASSES: dict[PerturbationType, type[Perturbation]] = {}


def register(cls: type[Perturbation]) -> type[Perturbation]:
    """Class decorator: make ``cls`` the implementation of ``cls.kind``."""
    _CLASSES[cls.kind] = cls
    return cls


def perturbation_class(kind: PerturbationType | str) -> type[Perturbation]:
    """The class implementing ``kind``.

    Raises:
        ValueError: unknown kind (the message lists the known ones).
    """
    from simrl.perturb import content, faults, reshape  # noqa: F401 - registers the kinds

    try:
        return _CLASSES[PerturbationType(kind)]
    except ValueError:
        raise ValueError(f"unknown perturbation type {kind!r}; known: {', '.join(t.value for t in PerturbationType)}") \
            from None


def all_classes() -> list[type[Perturbation]]:
    """Every perturbation class, in :class:`PerturbationType` order."""
    return [perturbation_class(t) for t in PerturbationType]
