"""write_datasets: parquet columns as verl's RLHFDataset reads them."""

from __future__ import annotations

import pytest

pytest.importorskip("verl", reason="the datasets are checked against verl's RLHF dataset reader; install simrl[verl]")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset  # noqa: E402

from simrl.trainers.verl.data import AGENT_NAME, write_datasets  # noqa: E402
from simrl.world.schema import Task  # noqa: E402
from tests.trainers.verl.helpers import make_recipe  # noqa: E402


def test_parquet_columns_and_types(records_setup):
    table = pq.read_table(records_setup["data"]["train"])
    schema = table.schema
    assert set(schema.names) == {"data_source", "prompt", "reward_model", "agent_name", "extra_info"}
    assert schema.field("prompt").type == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    assert schema.field("reward_model").type == pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
    assert schema.field("extra_info").type.field("index").type == pa.int64()
    train = [t for t in records_setup["tasks"].values() if t.type == "records" and t.split == "train"]
    assert table.num_rows == len(train)
    val = pq.read_table(records_setup["data"]["val"]).to_pylist()
    assert {r["extra_info"]["split"] for r in val} == {"dev"} and val


def test_rlhf_dataset_reads_the_rows(records_setup, tokenizer, tmp_path):
    config = OmegaConf.create({"return_raw_chat": True, "max_prompt_length": 4096, "cache_dir": str(tmp_path),
                               "tool_config_path": str(records_setup["configs"]["real"]),
                               "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1})
    dataset = RLHFDataset(str(records_setup["data"]["train"]), tokenizer, config)
    rows = pq.read_table(records_setup["data"]["train"]).to_pylist()
    assert len(dataset) == len(rows) and dataset.tool_schemas  # nothing filtered; tool schemas counted
    names = {s["function"]["name"] for s in records_setup["schemas"]}
    for i, row in enumerate(rows):
        item = dataset[i]
        task = Task.model_validate_json(item["reward_model"]["ground_truth"])
        assert item["index"] == i and item["agent_name"] == AGENT_NAME
        assert item["data_source"] == "simrl:mcp-world:records" and task.task_id == row["extra_info"]["task_id"]
        assert [m["role"] for m in item["raw_prompt"]] == ["system", "user"]
        assert item["raw_prompt"][1]["content"] == task.policy_view()["prompt"]
        assert task.gold.model_dump_json() not in item["raw_prompt"][1]["content"]
        assert set(item["tools_kwargs"]) == names
        assert {v["create_kwargs"]["task_id"] for v in item["tools_kwargs"].values()} == {task.task_id}


def test_search_datasets_and_seeded_order(tiny_world, tmp_path):
    recipe = make_recipe(tiny_world, env_id="search", arms={"real": {"environment": "real"}})
    a = write_datasets(recipe, tiny_world, tmp_path / "a", seed=1)
    b = write_datasets(recipe, tiny_world, tmp_path / "b", seed=2)
    rows_a, rows_b = (pq.read_table(d["train"]).to_pylist() for d in (a, b))
    ids_a, ids_b = ([r["extra_info"]["task_id"] for r in rows] for rows in (rows_a, rows_b))
    assert sorted(ids_a) == sorted(ids_b) and ids_a != ids_b  # same tasks, seeded order
    assert {r["data_source"] for r in rows_a} == {"simrl:search:qa", "simrl:search:table"}
    assert set(rows_a[0]["extra_info"]["tools_kwargs"]) == {"web_search", "web_extractor"}
    assert pq.read_table(a["val"]).num_rows > 0
