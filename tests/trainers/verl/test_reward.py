"""compute_score through verl's own reward path (AgentLoopWorker._compute_score -> NaiveRewardManager)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("verl", reason="compute_score runs through verl's own reward path; install simrl[verl]")

from omegaconf import OmegaConf  # noqa: E402
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker  # noqa: E402
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager  # noqa: E402
from verl.trainer.ppo.reward import get_custom_reward_fn  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset  # noqa: E402

from simrl.policies.records_expert import RecordsExpert  # noqa: E402
from simrl.trainers.verl.reward import REWARD_PATH, SCORE_KEYS, compute_score, final_answer  # noqa: E402
from tests.trainers.verl.helpers import ScriptedServer, load_tools, run_loop  # noqa: E402


def _reward_worker(tokenizer) -> AgentLoopWorker:
    """verl's AgentLoopWorker scoring path, its reward worker (a Ray actor) run in this process."""
    cfg = OmegaConf.create({"reward": {"custom_reward_function": {"path": REWARD_PATH, "name": "compute_score"}}})
    manager = NaiveRewardManager(cfg, tokenizer, get_custom_reward_fn(cfg))
    worker = object.__new__(AgentLoopWorker)  # only the attributes _compute_score reads
    worker.processor, worker.mm_processor_kwargs = None, {}
    worker.reward_loop_worker_handles = [SimpleNamespace(compute_score=SimpleNamespace(remote=manager.run_single))]
    return worker


def _dataset(setup: dict, tokenizer, tmp_path: Path) -> RLHFDataset:
    config = OmegaConf.create({"return_raw_chat": True, "max_prompt_length": 4096, "cache_dir": str(tmp_path),
                               "tool_config_path": str(setup["configs"]["real"]), "filter_overlong_prompts": False})
    return RLHFDataset(str(setup["data"]["train"]), tokenizer, config)


async def _scored(setup: dict, tokenizer, item: dict, arm: str = "real", **server_options) -> tuple[float, dict]:
    task = setup["tasks"][item["extra_info"]["task_id"]]
    server = ScriptedServer(tokenizer, RecordsExpert(setup["world"], list(setup["tasks"].values())), task,
                            setup["schemas"], **server_options)
    row = {"prompt": item["raw_prompt"], "extra_info": item["extra_info"]}
    out = await run_loop(load_tools(setup["configs"][arm]), server, row, tokenizer)
    kwargs = {k: v for k, v in item.items() if k not in ("dummy_tensor", "agent_name")}
    await _reward_worker(tokenizer)._compute_score([out], kwargs=kwargs)
    return out.reward_score, out.extra_fields["reward_extra_info"]


def _item(dataset: RLHFDataset, setup: dict, kind: str) -> dict:
    for i in range(len(dataset)):
        item = dataset[i]
        if getattr(setup["tasks"][item["extra_info"]["task_id"]].gold, "kind", None) == kind:
            return item
    raise AssertionError(f"no {kind} task")


def test_read_task_right_and_wrong_answers(records_setup, tokenizer, tmp_path):
    item = _item(_dataset(records_setup, tokenizer, tmp_path), records_setup, "read")
    right, info = asyncio.run(_scored(records_setup, tokenizer, item))
    wrong, wrong_info = asyncio.run(_scored(records_setup, tokenizer, item, answer="<answer>nobody at all</answer>"))
    assert right == 1.0 and info["success"] == 1.0 and info["answered"] == 1.0 and info["tool_calls"] >= 1
    assert wrong == 0.0 and wrong_info["success"] == 0.0
    assert set(info) == set(SCORE_KEYS) == set(wrong_info)


def test_write_task_scored_on_the_final_record_state(records_setup, tokenizer, tmp_path):
    item = _item(_dataset(records_setup, tokenizer, tmp_path), records_setup, "write")
    done, info = asyncio.run(_scored(records_setup, tokenizer, item, arm="sim-uncontrolled"))
    cut, cut_info = asyncio.run(_scored(records_setup, tokenizer, item, arm="sim-uncontrolled", max_calls=1))
    assert done == 1.0 and info["success"] == 1.0
    assert cut < 1.0 and cut_info["success"] == 0.0 and cut_info["tool_calls"] == 1.0  # stopped before writing


def test_compute_score_reports_env_failures_and_needs_no_tool_call():
    from simrl.world.schema import Evidence, QAGold, Task

    task = Task(task_id="t", type="qa", split="train", prompt="?", gold=QAGold(answer="Port Ellen"),
                evidence=Evidence(), hops=1, difficulty="easy", template="x")
    direct = compute_score("simrl:search:qa", "<answer>Port Ellen</answer>", task.model_dump_json())
    failed = compute_score("simrl:search:qa", "<answer>?</answer>", task.model_dump_json(),
                           {"extras": {"simrl": {"env_failure": True, "tool_calls": 2, "perturbations": ["x"]}}})
    assert direct["score"] == 1.0 and direct["tool_calls"] == 0.0
    assert failed == {"score": 0.0, "success": 0.0, "answered": 1.0, "env_failure": 1.0, "tool_calls": 2.0,
                      "perturbations": 1.0}


def test_final_answer_is_the_text_after_the_last_observation():
    assert final_answer("<tool_call>\n{}\n</tool_call>\n\n\n[x]\nPort Ellen\n\n\nassistant\nOban", "[x]\nPort Ellen") \
        == "Oban"
    assert final_answer("user\n<tool_response>\nPort Ellen\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
                        "<tool_call>{}</tool_call>") == ""  # the last turn was a call: no answer
