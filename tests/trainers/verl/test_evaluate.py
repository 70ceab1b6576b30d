"""Held-out evaluation after a verl run: verl's merger turns its newest FSDP checkpoint into a model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("verl", reason="verl's model merger turns the checkpoint into a model folder; install simrl[verl]")

from simrl.errors import SimrlError  # noqa: E402
from simrl.trainers.verl.config import VerlFiles  # noqa: E402
from simrl.trainers.verl.evaluate import evaluate_verl_run, latest_verl_checkpoint  # noqa: E402
from tests.trainers.verl.helpers import make_recipe  # noqa: E402


def _fsdp_checkpoint(model_dir: Path, actor: Path, scale: float) -> dict:
    """An actor checkpoint as verl's FSDP checkpoint manager writes it on one GPU (world size 1): the
    rank's full state dict, fsdp_config.json and huggingface/ (config + tokenizer). Weights are the tiny
    model's times ``scale`` so each checkpoint is recognisable."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    state = {k: v * scale for k, v in model.state_dict().items()}
    actor.mkdir(parents=True)
    torch.save(state, actor / "model_world_size_1_rank_0.pt")
    (actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 1, "world_size": 1}))
    shutil.copytree(model_dir, actor / "huggingface", ignore=shutil.ignore_patterns("*.safetensors"))
    return state


def test_newest_checkpoint_is_merged_and_evaluated(tiny_world, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from simrl.testing.tiny_model import make_tiny_model

    model_dir = make_tiny_model(tmp_path / "tiny", seed=2)
    recipe = make_recipe(tiny_world)
    recipe = recipe.model_copy(update={
        "policy": recipe.policy.model_copy(update={"max_tokens_per_turn": 8}),
        "evaluation": recipe.evaluation.model_copy(update={"max_tasks": 2}),
        "budget": recipe.budget.model_copy(update={"max_turns": 6})})
    run = tmp_path / "out" / "real" / "seed-0"
    files = VerlFiles(run / "verl", "real")
    with pytest.raises(SimrlError, match="no verl checkpoint"):
        evaluate_verl_run(recipe, run, files, worlds=tmp_path / "worlds", device="cpu")
    _fsdp_checkpoint(model_dir, files.checkpoints / "global_step_1" / "actor", 0.5)
    newest = _fsdp_checkpoint(model_dir, files.checkpoints / "global_step_2" / "actor", 2.0)
    (files.checkpoints / "global_step_3").mkdir()  # an incomplete checkpoint (no actor/) is passed over
    assert latest_verl_checkpoint(files) == (2, files.checkpoints / "global_step_2" / "actor")
    (files.checkpoints / "latest_checkpointed_iteration.txt").write_text("1")
    assert latest_verl_checkpoint(files)[0] == 1  # verl's pointer wins over the folder names
    (files.checkpoints / "latest_checkpointed_iteration.txt").write_text("2")

    results = evaluate_verl_run(recipe, run, files, worlds=tmp_path / "worlds", device="cpu")
    merged = AutoModelForCausalLM.from_pretrained(run / "final")
    for key, value in merged.state_dict().items():  # the merger writes bfloat16
        assert torch.equal(value.float(), newest[key].to(value.dtype).float()), key
    written = json.loads((run / "eval" / "test" / "eval.json").read_text())
    assert written["episodes"] == written["tasks"] >= 1 and results["test"] == written["metrics"]
    assert set(results) == {"all", "test"}
    assert "verl.model_merger" in files.log.read_text()
