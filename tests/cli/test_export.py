"""simrl export: real rollouts become OpenAI tool-call chat rows that datasets.load_dataset("json") reads and a chat
template with tools renders back into the same calls and results; --only-success, env failures, torn records,
Parquet and dataset folders, an existing --out."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.envs.base import make
from simrl.policies import make_policy
from simrl.policies.openai_policy import DEFAULT_SYSTEM_PROMPT, chat_messages
from simrl.rollout import TrajectoryWriter, rollout
from simrl.types import Observation, Trajectory
from simrl.world.io import load_tasks

datasets = pytest.importorskip("datasets", reason="simrl export --format parquet/dataset needs datasets")
runner = CliRunner()


@pytest.fixture(scope="module")
def trajectories(tiny_world, tmp_path_factory) -> tuple:
    """Expert rollouts on record tasks (all successful), a failed copy, an environment failure and a torn record."""
    tasks = [t for t in load_tasks(tiny_world, split="train") if t.type == "records"][:3]
    policy = make_policy("expert", "mcp-world", tiny_world, tasks)
    trajs = asyncio.run(rollout(lambda: make("mcp-world", world=tiny_world, transport="inprocess"), policy, tasks))
    assert all(t.status == "success" for t in trajs) and any(len(t.turns) > 2 for t in trajs)
    failed = trajs[0].model_copy(update={"status": "failure", "reward": 0.0})
    broken = Trajectory(task_id="x", env_id="mcp-world", initial=Observation(text=""), status="env_failure")
    path = tmp_path_factory.mktemp("traj") / "run" / "trajectories.jsonl"
    writer = TrajectoryWriter(path)
    for t in [*trajs, failed, broken]:
        writer.write(t)
    writer.close()
    with path.open("a") as f:
        f.write('{"task_id": "cut sho')  # a writer killed mid-record
    return path, trajs


def test_rows_load_with_datasets_and_pass_a_chat_template(trajectories, tmp_path):
    from trl.data_utils import apply_chat_template

    from simrl.testing.tiny_model import make_tokenizer

    path, trajs = trajectories
    done = runner.invoke(app, ["export", str(path.parent), "--only-success", "--out", str(tmp_path / "sft.jsonl")])
    assert done.exit_code == 0, done.output
    assert "3 episode(s) (3 successful)" in done.output and "1 status failure" in done.output
    rows = datasets.load_dataset("json", data_files=str(tmp_path / "sft.jsonl"), split="train")
    assert len(rows) == 3 and set(rows["status"]) == {"success"}
    tok = make_tokenizer()
    for row, traj in zip(rows, trajs):
        assert row["task_id"] == traj.task_id and row["env_id"] == "mcp-world"
        def present(msgs: list[dict]) -> list[dict]:  # Arrow gives every message every key (None when absent)
            return [{k: v for k, v in m.items() if v is not None} for m in msgs]

        messages = present(row["messages"])
        assert messages == present(chat_messages(DEFAULT_SYSTEM_PROMPT, traj.initial, traj.turns))
        calls = [c for m in messages if m.get("tool_calls") for c in m["tool_calls"]]
        assert all(isinstance(c["function"]["arguments"], str) for c in calls)  # OpenAI: arguments as a JSON string
        assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == [c["id"] for c in calls]
        text = apply_chat_template({"messages": row["messages"]}, tok, tools=json.loads(row["tools"]))["text"]
        system, episode = text.split("<|im_start|>user", 1)  # the system turn shows the call format with placeholders
        rendered = [json.loads(b) for b in re.findall(r"<tool_call>\n(.*?)\n</tool_call>", episode)]
        assert rendered == [{"name": t.action.tool_calls[0].name, "arguments": t.action.tool_calls[0].arguments}
                            for t in traj.turns if t.action.tool_calls]
        assert episode.count("<tool_response>") == len(calls) and traj.turns[-1].action.answer in episode
        assert all(t["function"]["name"] in system for t in json.loads(row["tools"]))  # the tools: in the system turn


def test_failures_torn_records_parquet_dataset_and_existing_out(trajectories, tmp_path):
    path, _ = trajectories
    out = tmp_path / "all.parquet"
    done = runner.invoke(app, ["export", str(path), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "4 episode(s) (3 successful)" in done.output
    assert "1 status env_failure" in done.output and "1 torn record" in done.output
    table = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert table["status"] == ["success"] * 3 + ["failure"]
    done = runner.invoke(app, ["export", str(path), "--out", str(tmp_path / "ds"), "--include-failures", "--limit", "5"])
    assert done.exit_code == 0, done.output
    assert datasets.load_from_disk(str(tmp_path / "ds"))["status"][-1] == "env_failure"
    again = runner.invoke(app, ["export", str(path), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, ["export", str(path), "--out", str(out), "--force", "--only-success"]).exit_code == 0
    assert len(datasets.load_dataset("parquet", data_files=str(out), split="train")) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "t"}\n')
    done = runner.invoke(app, ["export", str(bad), "--out", str(tmp_path / "x.jsonl")])
    assert done.exit_code == 2 and "bad.jsonl:1: not a simrl trajectory" in done.output
