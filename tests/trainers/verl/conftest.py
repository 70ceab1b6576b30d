"""Fixtures of the verl adapter tests: the tiny tokenizer, a recipe's datasets and tool configs."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tokenizer():
    """The locally trained tiny tokenizer with the Qwen2.5-style tool chat template."""
    from simrl.testing.tiny_model import make_tokenizer

    return make_tokenizer()


@pytest.fixture(scope="session")
def records_setup(tiny_world: Path, tmp_path_factory) -> dict:
    """mcp-world recipe (three arms), its tool configs, datasets and rows, on the tiny world."""
    import pyarrow.parquet as pq

    from simrl.trainers.verl.data import write_datasets
    from simrl.trainers.verl.tools import tool_schemas, write_tool_config
    from simrl.world.io import load_tasks
    from tests.trainers.verl.helpers import make_recipe

    out = tmp_path_factory.mktemp("verl-records")
    recipe = make_recipe(tiny_world)
    configs = {arm: write_tool_config(recipe, arm, tiny_world, out) for arm in recipe.arms}
    data = write_datasets(recipe, tiny_world, out, seed=0)
    rows = pq.read_table(data["train"]).to_pylist()
    return {"recipe": recipe, "world": tiny_world, "configs": configs, "data": data, "rows": rows,
            "tasks": {t.task_id: t for t in load_tasks(tiny_world)}, "schemas": tool_schemas(recipe, tiny_world)}
