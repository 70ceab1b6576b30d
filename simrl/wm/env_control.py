"""Per-step control of a world-model environment's calls (controllable simulation, docs/design.md §1).

:meth:`simrl.wm.env.WorldModelEnv.set_control` records a :class:`StepControl` for the next step;
:func:`call_control` turns it into the :class:`CallControl` of one call (instruction text, compliance
check, re-samples, effect on the ground truth). Data only: the re-sampling itself is
:class:`simrl.wm.env_predict.Predictor`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class StepControl:
    """Control of the calls of one step (from :meth:`~simrl.wm.env.WorldModelEnv.set_control`), by call index."""

    instructions: dict[int, str] = field(default_factory=dict)
    checks: dict[int, Callable[[str], bool]] = field(default_factory=dict)
    retries: int = 0
    no_effect: frozenset[int] = frozenset()


@dataclass
class CallControl:
    """What applies to one call: instruction text (None: none), compliance check, re-samples, effect."""

    text: str | None = None
    check: Callable[[str], bool] | None = None
    retries: int = 0
    effect: bool = True


def call_control(standing: str | None, control: StepControl, index: int) -> CallControl:
    """The control of call ``index`` of a step: the standing instruction and the step's instruction, joined.

    Args:
        standing: the environment's instruction for every call (``WorldModelEnv.control``), or None.
        control: the step's control.
        index: the call's index in the step's action.
    """
    texts = [t.strip() for t in (standing, control.instructions.get(index)) if t and t.strip()]
    return CallControl("\n\n".join(texts) or None, control.checks.get(index), control.retries,
                       index not in control.no_effect)


def passes(check: Callable[[str], bool], text: str) -> bool:
    """``check(text)`` as a bool; a check that raises counts as not complied (``step`` never raises)."""
    try:
        return bool(check(text))
    except Exception:  # noqa: BLE001 - a buggy check must not end the episode
        return False
