"""The ``oracle`` backend: a world's ground truth as the observations, and the world's simulation facts.

The oracle is not an LLM. It renders the world's ground truth with *idealised, edge-case-free*
semantics: fast, deterministic, the reference for factuality and the CPU default, and the
"uncontrolled", too-clean simulator of the experiments (docs/design.md §1). The ground truth itself
comes from each environment's world-model adapter (:class:`simrl.envs.base.WorldModelAdapter`;
the built-in ones are in :mod:`simrl.envs.truth`):

* ``search``: the real search index tools (``web_search``, ``web_extractor``) with no errors beyond
  genuine ones (bad arguments, an unknown URL's 404).
* ``mcp-world``: the record server's own tools, called in process on an episode's copy of the
  records, but unpaged: every list returns all its results in one page (``next_cursor`` null), and
  there are no operational faults. The JSON layout and the error texts are the server's.

The same in-process record tools on a *paged* store keep the ground truth of an episode's writes
when an LLM world model renders the observations: the environment applies each write call to this
shadow store and scores write tasks on it, never on the model's memory.

This module keeps what the world-model side reads from a world beyond the tools: the simulation
instructions (:func:`instructions_of`); :func:`shared_index` is the search adapter's shared index.
"""

from __future__ import annotations

from pathlib import Path

from simrl.envs.truth import shared_index
from simrl.memo import resolved
from simrl.world.schema import SimulationInstruction

__all__ = ["instructions_of", "shared_index"]

_instructions: dict[Path, dict[str, SimulationInstruction]] = {}


def instructions_of(world: Path) -> dict[str, SimulationInstruction]:
    """The world's simulation instructions by task id (``simulation.jsonl``, read once per process)."""
    from simrl.world.io import load_instructions

    key = resolved(world)
    if key not in _instructions:
        _instructions[key] = load_instructions(key)
    return _instructions[key]
