"""Predictors of a fidelity evaluation other than the oracle: LLM calls (cached, retried) and baselines.

Also the sample selection of ``--max-transitions`` (the compact system prompt of ``--wm-tools called`` is
:func:`simrl.wm.transitions.called_tools_system`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from simrl.errors import SimrlError
from simrl.wm.backend import Sampling, WorldModelBackend
from simrl.wm.transitions import Transition


def baseline_prediction(name: str, tr: Transition) -> str:
    """The ``repeat-previous`` or ``empty`` baseline's prediction for ``tr``."""
    if name == "repeat-previous":
        return tr.history[-1].observation if tr.history else ""
    return ""


async def generate(backend: WorldModelBackend, messages: list[dict[str, Any]], sampling: Sampling,
                   cache: Any) -> str:
    """The raw completion: from the cache, else from the backend (which retries transient failures itself)
    (the world-model environment's own :meth:`simrl.wm.env_predict.Predictor.generate`, so an evaluation
    calls a backend exactly as a Sim-RL rollout does, and shares its cache entries).

    Raises:
        BackendError: the backend failed (after its own retries, for transient failures).
    """
    from simrl.wm.env_predict import Predictor

    stats = dict.fromkeys(("calls", "parse_retries", "unparsed", "control_retries"), 0)
    predictor = Predictor(backend, cache, max_parse_retries=0, stats=stats)
    return await predictor.generate(messages, sampling)


def select(transitions: Sequence[Transition], limit: int | None) -> list[Transition]:
    """At most ``limit`` transitions, taken round-robin over the domains (so every domain is in a small sample),
    in file order within a domain.

    Raises:
        SimrlError: ``limit`` below 1.
    """
    if limit is None or limit >= len(transitions):
        return list(transitions)
    if limit < 1:
        raise SimrlError(f"--max-transitions must be >= 1, got {limit}")
    queues: dict[str, list[Transition]] = defaultdict(list)
    for tr in transitions:
        queues[tr.domain].append(tr)
    picked: list[Transition] = []
    while len(picked) < limit:
        for queue in queues.values():
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked
