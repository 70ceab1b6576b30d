"""The enumerations several modules and the CLI share, defined once (``Literal`` types).

Kept free of heavy imports so the command line can use them as its options' choices without slowing
``simrl --help``; the pydantic models (tasks, recipes, fidelity evaluation) take them from here.
:data:`WorldModelName` is the static mirror of the world-model backend registry
(:data:`simrl.wm.factory.MAKERS`); ``tests/envs/test_registry.py`` checks they list the same names.
"""

from __future__ import annotations

from typing import Literal, get_args

Split = Literal["train", "dev", "test"]
"""Task splits of a world (held-out worlds hold only ``test`` tasks)."""

PerturbMode = Literal["inject", "control"]
"""How a perturbation is applied: in code (``inject``) or by a control instruction to a world model."""

Transport = Literal["stdio", "inprocess"]
"""How the mcp-world record server runs: a subprocess per episode, or in this process."""

WorldModelName = Literal["oracle", "openai", "transformers", "llamacpp"]
"""World-model backends (``real``, the real environment, is not one)."""

WmTools = Literal["all", "called"]
"""Tool definitions in a world model's system prompt: the episode's, or those called so far."""

WmUnparsed = Literal["empty", "raw"]
"""How an answer without a ``<predicted_observation>`` block is scored."""

ExportFormat = Literal["jsonl", "parquet", "dataset"]
"""``simrl export`` outputs: JSON lines, one Parquet file, a ``datasets.Dataset.save_to_disk`` folder."""


def values(literal: object) -> tuple[str, ...]:
    """The values of one of these ``Literal`` types, e.g. ``values(Split) == ("train", "dev", "test")``."""
    return tuple(get_args(literal))
