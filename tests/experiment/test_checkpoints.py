"""Run checkpoints on disk (simrl.experiment.runs.save_checkpoint): the optimizer's moments only in the
latest checkpoint, compressed, given back exactly; the one before keeps the optimizer's settings only,
and a resume from it (the latest damaged) still loads into a fresh optimizer."""

from __future__ import annotations

import pytest
import torch

from simrl.experiment import runs


def _model_and_adam(touched: int = 40):
    """A hashed-embedding model like the scorer policy's (32,768 x 64) after one Adam step on a few rows."""
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"embed": torch.nn.EmbeddingBag(32768, 64, mode="sum"), "out": torch.nn.Linear(64, 1)})
    adam = torch.optim.Adam(model.parameters(), lr=0.01)
    model["out"](model["embed"](torch.randint(0, 32768, (touched,)), torch.tensor([0]))).sum().backward()
    adam.step()
    return model, adam


def _state(model, adam) -> dict:
    return {"policy": model.state_dict(), "optimizer": adam.state_dict(), "rng_torch": torch.get_rng_state()}


@pytest.mark.parametrize("same_process", [True, False])
def test_only_the_latest_checkpoint_keeps_the_moments_compressed(tmp_path, same_process):
    """Slimmed from what this process packed (no decompression), or read back (a checkpoint another process wrote)."""
    files = runs.RunFiles(tmp_path / "run")
    model, adam = _model_and_adam()
    policy_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    for step in (1, 2, 3):
        if not same_process:
            runs._SLIM.clear()
        runs.save_checkpoint(files, step, _state(model, adam), keep=2)
    assert sorted(p.name for p in files.checkpoints.iterdir()) == ["latest", "step-2.pt", "step-3.pt"]
    latest, older = files.checkpoints / "step-3.pt", files.checkpoints / "step-2.pt"
    # moments 2 x the weights unpacked; here the whole checkpoint is barely more than the weights
    assert latest.stat().st_size < 1.1 * policy_bytes and older.stat().st_size < 1.02 * policy_bytes
    step, state = runs.latest_checkpoint(files)
    assert step == 3
    saved = adam.state_dict()
    for key, moments in saved["state"].items():
        for name, value in moments.items():
            assert torch.equal(state["optimizer"]["state"][key][name], value), (key, name)
    assert state["optimizer"]["param_groups"] == saved["param_groups"]
    thin = runs.load_torch(older)["optimizer"]
    assert thin == {"state": {}, "param_groups": saved["param_groups"]}


def test_a_resume_from_the_older_checkpoint_restarts_the_moments(tmp_path):
    files = runs.RunFiles(tmp_path / "run")
    model, adam = _model_and_adam()
    runs.save_checkpoint(files, 2, _state(model, adam), keep=2)
    runs.save_checkpoint(files, 4, _state(model, adam), keep=2)
    (files.checkpoints / "step-4.pt").write_bytes(b"damaged")
    step, state = runs.latest_checkpoint(files)
    assert step == 2 and state["optimizer"]["state"] == {}
    fresh_model, _ = _model_and_adam(touched=1)
    fresh = torch.optim.Adam(fresh_model.parameters(), lr=0.5)
    fresh.load_state_dict(state["optimizer"])  # what the trainer does on resume: it loads
    assert fresh.param_groups[0]["lr"] == 0.01 and not fresh.state
