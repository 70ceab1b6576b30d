"""A recipe's tasks as verl's RLHF datasets: ``train.parquet`` and ``val.parquet``.

verl 0.9.1's ``RLHFDataset`` (``verl/utils/dataset/rl_dataset.py``) reads each row's ``prompt`` (chat
messages; with ``data.return_raw_chat=True`` they reach the agent loop as ``raw_prompt``), and from
``extra_info`` the ``index`` and ``tools_kwargs``; the agent loop worker picks the loop by the row's
``agent_name``; the reward manager reads ``data_source`` and ``reward_model.ground_truth``. One row per
task (:func:`task_row`)::

    data_source   "simrl:<env id>:<task type>"             e.g. simrl:mcp-world:records
    prompt        [{role: system, content: <tool-use instructions>}, {role: user, content: <task prompt>}]
    reward_model  {style: rule, ground_truth: <the task as JSON>}     (gold: read by the reward only)
    agent_name    "tool_agent"                                          (verl's ToolAgentLoop)
    extra_info    {index, split, task_id, task_type, need_tools_kwargs: true,
                   tools_kwargs: {<tool name>: {create_kwargs: {task_id}}}}

The user message is the task's policy view (``Task.policy_view()["prompt"]``, exactly what the
environment's ``reset`` shows); the system message is the LLM policy's tool-use instructions
(:data:`simrl.policies.openai_policy.DEFAULT_SYSTEM_PROMPT`: answers inside ``<answer>...</answer>``,
tables as one markdown table). The gold never enters ``prompt``.

Splits: ``train.parquet`` holds the training world's ``train`` tasks of the recipe's task types;
``val.parquet`` (verl's in-training validation, run in the arm's own environment) its ``dev`` tasks,
or the ``evaluation.split`` tasks when the world has no dev task, at most ``evaluation.max_tasks``.
The held-out evaluation in the real environment is simrl's own (:mod:`simrl.experiment.heldout`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError

AGENT_NAME = "tool_agent"
"""verl's registered name of ``ToolAgentLoop`` (every row's ``agent_name``)."""


def task_row(task: Any, env_id: str, tool_names: list[str], index: int) -> dict[str, Any]:
    """One dataset row of ``task`` (see the module docstring for the layout)."""
    from simrl.policies.openai_policy import DEFAULT_SYSTEM_PROMPT

    kwargs = {name: {"create_kwargs": {"task_id": task.task_id}} for name in tool_names}
    return {
        "data_source": f"simrl:{env_id}:{task.type}",
        "prompt": [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                   {"role": "user", "content": task.policy_view()["prompt"]}],
        "reward_model": {"style": "rule", "ground_truth": task.model_dump_json()},
        "agent_name": AGENT_NAME,
        "extra_info": {"index": index, "split": task.split, "task_id": task.task_id, "task_type": task.type,
                       "need_tools_kwargs": True, "tools_kwargs": kwargs},
    }


def _val_tasks(recipe: Any, world: Path) -> list:
    from simrl.experiment.runs import world_tasks

    try:
        tasks = world_tasks(recipe, world, "dev")
    except SimrlError:
        tasks = world_tasks(recipe, world, recipe.evaluation.split)
    return tasks[: recipe.evaluation.max_tasks] if recipe.evaluation.max_tasks else tasks


def _write(rows: list[dict[str, Any]], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_datasets(recipe: Any, world: Path, out_dir: Path, *, seed: int = 0) -> dict[str, Path]:
    """Write ``out_dir/train.parquet`` and ``out_dir/val.parquet`` (verl's RLHF dataset format).

    Args:
        recipe: a loaded :class:`~simrl.experiment.recipe.Recipe`.
        world: the training world folder.
        out_dir: where to write (created).
        seed: shuffles the training rows (verl's dataloader may shuffle again); val keeps file order.

    Returns:
        ``{"train": path, "val": path}``.

    Raises:
        SimrlError: the world has no train task (or no dev / evaluation-split task) of the recipe's
            task types, or its environment offers no tools.
    """
    from simrl.experiment.runs import world_tasks
    from simrl.trainers.verl.tools import tool_schemas

    world = Path(world)
    train = world_tasks(recipe, world, "train")
    random.Random(seed).shuffle(train)
    val = _val_tasks(recipe, world)
    names = [s["function"]["name"] for s in tool_schemas(recipe, world)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"train": _write([task_row(t, recipe.env.id, names, i) for i, t in enumerate(train)], out / "train.parquet"),
            "val": _write([task_row(t, recipe.env.id, names, i) for i, t in enumerate(val)], out / "val.parquet")}
