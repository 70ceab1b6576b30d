"""The Hydra overrides of a verl job: what they say, and that verl 0.9.1's own config accepts them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simrl.errors import SimrlError, SpecError
from simrl.experiment.recipe import parse_recipe, resolve_files
from simrl.trainers.verl.config import VerlFiles, hydra_value, last_wins, overrides

ARMS = {"real": {"environment": "real"},
        "sim": {"environment": "world_model", "backend": "oracle", "schedule": "mcpmark"}}


def recipe(world: Path, **changes):
    """A verl recipe on a world folder; ``changes`` replace top-level sections."""
    data = {"name": "cfg-test", "world": {"spec": str(world)}, "env": {"id": "mcp-world"}, "arms": ARMS,
            "policy": {"kind": "llm", "model": "Qwen/Qwen3-4B-Instruct-2507", "max_prompt_tokens": 1024,
                       "max_response_tokens": 3072, "temperature": 0.8},
            "trainer": {"kind": "verl", "lr": 2e-6, "grad_clip": 0.5, "checkpoint_every": 7, "keep_checkpoints": 3,
                        "verl": {"nnodes": 2, "n_gpus_per_node": 4, "rollout": "sglang", "tensor_parallel_size": 2,
                                 "gpu_memory_utilization": 0.6}},
            "budget": {"steps": 30, "batch": 6, "group_size": 4, "max_turns": 9}}
    data.update(changes)
    return resolve_files(parse_recipe(data), Path("."))


def as_dict(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, value = item.split("=", 1)
        assert key not in out, f"{key} given twice"
        out[key] = value
    return out


def test_overrides_follow_the_recipe(tiny_world, tmp_path):
    from simrl.trainers.verl.reward import REWARD_PATH
    from simrl.trainers.verl.tools import REQUIRED_OVERRIDES

    files = VerlFiles(tmp_path / "verl", "sim")
    got = as_dict(overrides(recipe(tiny_world), "sim", files, seed=3))
    assert got["algorithm.adv_estimator"] == "grpo"
    assert got["data.train_files"] == str(files.train) and got["data.val_files"] == str(files.val)
    assert got["data.train_batch_size"] == "6" and got["actor_rollout_ref.rollout.n"] == "4"
    assert got["data.max_prompt_length"] == "1024" and got["data.max_response_length"] == "3072"
    assert got["actor_rollout_ref.model.path"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert float(got["actor_rollout_ref.actor.optim.lr"]) == 2e-6
    assert got["actor_rollout_ref.rollout.name"] == "sglang"
    assert got["actor_rollout_ref.rollout.tensor_model_parallel_size"] == "2"
    assert got["actor_rollout_ref.rollout.gpu_memory_utilization"] == "0.6"
    assert got["actor_rollout_ref.rollout.multi_turn.tool_config_path"] == str(tmp_path / "verl" / "tools-sim.yaml")
    assert got["actor_rollout_ref.rollout.multi_turn.max_assistant_turns"] == "9"  # budget.max_turns
    assert got["reward.custom_reward_function.path"] == REWARD_PATH and Path(REWARD_PATH).is_file()
    assert got["reward.custom_reward_function.name"] == "compute_score"
    assert (got["trainer.n_gpus_per_node"], got["trainer.nnodes"]) == ("4", "2")
    assert got["trainer.total_training_steps"] == "30" and got["trainer.save_freq"] == "7"
    assert got["trainer.default_local_dir"] == str(files.checkpoints)
    assert got["trainer.resume_mode"] == "disable" and got["trainer.experiment_name"] == "sim-seed3"
    assert got["trainer.logger"] == "[console]"
    for item in REQUIRED_OVERRIDES:  # the adapters' needs are all there, unchanged
        key, value = item.split("=", 1)
        assert got[key] == value


def test_turns_resume_and_user_overrides_win(tiny_world, tmp_path):
    verl = {"n_gpus_per_node": 8, "max_assistant_turns": 5,
            "overrides": ["actor_rollout_ref.rollout.name=vllm", "trainer.logger=[console,wandb]", "+my.extra=1"]}
    rec = recipe(tiny_world, trainer={"kind": "verl", "verl": verl})
    items = overrides(rec, "real", VerlFiles(tmp_path, "real"), resume=True)
    got = as_dict(items)
    assert got["actor_rollout_ref.rollout.multi_turn.max_assistant_turns"] == "5"
    assert got["trainer.resume_mode"] == "auto"
    assert got["actor_rollout_ref.rollout.name"] == "vllm" and got["trainer.logger"] == "[console,wandb]"
    assert items[-3:] == verl["overrides"]  # the user's come last


def test_shape_errors_say_how_to_fix(tiny_world, tmp_path):
    files = VerlFiles(tmp_path, "real")
    odd = recipe(tiny_world, budget={"steps": 2, "batch": 3, "group_size": 3})  # 9 episodes on 8 GPUs
    with pytest.raises(SimrlError, match=r"budget\.batch x budget\.group_size = 9 .* GPUs .*= 8"):
        overrides(odd, "real", files)
    tp = recipe(tiny_world, trainer={"kind": "verl", "verl": {"n_gpus_per_node": 4, "tensor_parallel_size": 3}})
    with pytest.raises(SimrlError, match="tensor_parallel_size 3 must divide"):
        overrides(tp, "real", files)
    with pytest.raises(SpecError, match="no arm 'nope'"):
        overrides(recipe(tiny_world), "nope", files)


def test_hydra_values_parse_back():
    hydra = pytest.importorskip("hydra.core.override_parser.overrides_parser",
                                reason="Hydra (a verl dependency) parses the overrides back")
    parser = hydra.OverridesParser.create()
    for value in ["/a b/it's.parquet", "Qwen/Qwen3-4B", "~/m", "-1", "true", "x=y,z", "http://h:8000/v1", 3, 1e-6, False]:
        assert parser.parse_override(f"k={hydra_value(value)}").value() == value
    assert last_wins(["a=1", "b=2", "a=3"]) == ["b=2", "a=3"]


_VALIDATE_THEN_RUN = """
import contextlib, runpy, sys
from pathlib import Path
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
import verl.trainer.main_ppo as main_ppo
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config

items = sys.argv[1:]
plain = [i for i in items if not i.startswith("hydra.")]
with initialize_config_dir(config_dir=str(Path(main_ppo.__file__).parent / "config"), version_base=None):
    cfg = compose(config_name="ppo_trainer", overrides=plain)
    with contextlib.redirect_stdout(sys.stderr):  # it prints; stdout is kept for the composed YAML
        validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    print("VALID critic", need_critic(cfg), "reference", need_reference_policy(cfg), file=sys.stderr)
    try:
        compose(config_name="ppo_trainer", overrides=[*plain, "actor_rollout_ref.rollout.no_such_key=1"])
    except ConfigCompositionException as err:
        print("BAD OVERRIDE REJECTED:", err, file=sys.stderr)
sys.argv = ["main_ppo", "--cfg", "job", *items]  # exactly `python -m verl.trainer.main_ppo --cfg job ITEMS`
runpy.run_module("verl.trainer.main_ppo", run_name="__main__", alter_sys=True)
"""


def test_verl_composes_and_validates_the_overrides(tiny_world, tmp_path):
    """In one Python process (verl's import is slow): verl's validate_config (what main_ppo runs before
    training) passes and an unknown key is rejected; then `python -m verl.trainer.main_ppo --cfg job
    OVERRIDES` prints the composed config and trains nothing."""
    pytest.importorskip("verl", reason="composes and validates the config with verl itself; install simrl[verl]")
    files = VerlFiles(tmp_path / "verl", "sim")
    items = overrides(recipe(tiny_world), "sim", files, seed=1)
    proc = subprocess.run([sys.executable, "-c", _VALIDATE_THEN_RUN, *items], cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "VALID critic False reference False" in proc.stderr  # GRPO: no critic; no KL term: no reference
    assert "BAD OVERRIDE REJECTED" in proc.stderr and "no_such_key" in proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    arr = cfg["actor_rollout_ref"]
    assert cfg["algorithm"]["adv_estimator"] == "grpo"
    assert cfg["data"]["train_batch_size"] == 6 and arr["rollout"]["n"] == 4
    assert cfg["data"]["return_raw_chat"] is True and cfg["data"]["train_files"] == str(files.train)
    assert arr["rollout"]["name"] == "sglang" and arr["rollout"]["tensor_model_parallel_size"] == 2
    assert arr["rollout"]["multi_turn"]["enable"] is True
    assert arr["rollout"]["multi_turn"]["tool_config_path"] == str(files.tool_config)
    assert arr["rollout"]["multi_turn"]["max_assistant_turns"] == 9
    assert arr["rollout"]["agent"]["default_agent_loop"] == "tool_agent"
    assert arr["actor"]["optim"]["lr"] == 2e-6 and arr["model"]["path"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert cfg["reward"]["custom_reward_function"]["name"] == "compute_score"
    assert cfg["trainer"]["total_training_steps"] == 30 and cfg["trainer"]["logger"] == ["console"]
    assert (cfg["trainer"]["nnodes"], cfg["trainer"]["n_gpus_per_node"]) == (2, 4)
    assert cfg["trainer"]["default_local_dir"] == str(files.checkpoints)
    assert not files.checkpoints.exists() and not (tmp_path / "outputs").exists()  # nothing ran


def test_required_overrides_quote_the_reward_path_and_workers_follow_the_overrides(tiny_world):
    """The reward file's path reaches verl as written, whatever its install folder holds; the fallback
    progress estimate counts the agent-loop workers the recipe's overrides ask for."""
    from simrl.trainers.verl.tools import required_overrides, tool_settings

    hydra = pytest.importorskip("hydra.core.override_parser.overrides_parser",
                                reason="Hydra (a verl dependency) parses the overrides back")
    parser = hydra.OverridesParser.create()
    odd = "/opt/envs/a,b (copy)/simrl/trainers/verl/reward.py"
    for item in required_overrides(odd):
        parsed = parser.parse_override(item)
        if parsed.key_or_group == "reward.custom_reward_function.path":
            assert parsed.value() == odd
    assert tool_settings(recipe(tiny_world), "real", tiny_world).agent_workers == 8  # verl's default
    one = recipe(tiny_world, trainer={"kind": "verl", "verl": {
        "overrides": ["actor_rollout_ref.rollout.agent.num_workers=1"]}})
    assert tool_settings(one, "real", tiny_world).agent_workers == 1
