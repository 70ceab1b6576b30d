"""The tiny two-arm, two-seed ablation recipe (as data) that the tracker and Ray tests run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def tiny_ablation(name: str) -> dict[str, Any]:
    """A fresh recipe mapping: real vs the oracle with the mcpmark schedule on the tiny world, 2 steps, seeds 0-1."""
    return {
        "name": name,
        "world": {"spec": str(ROOT / "worlds" / "tiny.yaml"), "seed": 0},
        "env": {"id": "mcp-world"},
        "real": {"transport": "inprocess"},
        "arms": {"real": {"environment": "real"},
                 "sim": {"environment": "world_model", "backend": "oracle", "schedule": "mcpmark"}},
        "budget": {"steps": 2, "group_size": 2, "batch": 2, "max_turns": 6},
        "evaluation": {"split": "dev", "max_tasks": 1},
        "seeds": [0, 1],
    }
