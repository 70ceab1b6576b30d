"""A run never changes silently: re-running `simrl train` on a run folder under a recipe that changes
that run is refused with one line naming the fields (exit 2), --dry-run says the same, and --extend
continues a run to a larger budget.steps deliberately (simrl.experiment.resume)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.errors import SimrlError
from simrl.experiment import runs
from simrl.experiment.recipe import load_recipe
from simrl.experiment.resume import changed_fields, flatten
from simrl.trainers import lifecycle
from simrl.trainers.embedded import train_arm
from tests.trainers.test_embedded import TINY

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-step run of TINY's real arm (no evaluation) under OUT/real/seed-0."""
    tmp = tmp_path_factory.mktemp("resume")
    data = {**json.loads(json.dumps(TINY)), "budget": {"steps": 2, "group_size": 2, "batch": 2, "max_turns": 6},
            "trainer": {"checkpoint_every": 1, "trajectories_per_step": 1}}
    (tmp / "r.yaml").write_text(yaml.safe_dump(data))
    out = tmp / "out"
    train_arm(load_recipe(tmp / "r.yaml"), "real", 0, runs.run_dir(out, "real", 0), worlds=runs.worlds_dir(out),
              run_eval=False)
    return tmp / "r.yaml", out


def _train(recipe, out, *args):
    result = runner.invoke(app, ["train", str(recipe), "--arm", "real", "--seed", "0", "--out", str(out),
                                 "--no-evaluate", *args])
    return result, [ln for ln in result.output.splitlines() if ln.strip()]


def test_a_changed_recipe_is_refused_with_one_line_and_dry_run_agrees(trained):
    recipe, out = trained
    files = runs.RunFiles(runs.run_dir(out, "real", 0))
    before = files.recipe.read_text()
    for dry in ([], ["--dry-run"]):
        result, lines = _train(recipe, out, "--set", "budget.steps=3", *dry)
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0] == (f"error: {files.root} was started with another recipe (budget.steps: 2 -> 3); pass "
                            "--extend to continue it to the new budget.steps, or choose another --out for a new run")
        result, lines = _train(recipe, out, "--set", "trainer.lr=0.5", "--set", "budget.max_turns=7", *dry)
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert "(trainer.lr: 0.003 -> 0.5; budget.max_turns: 6 -> 7); choose another --out" in lines[0]
    assert files.recipe.read_text() == before and json.loads(files.summary.read_text())["steps"] == 2
    # what does not change this run is not compared: the trackers, the seeds list, another arm
    for same in (["--set", "logging.report_to=[]"], ["--set", "seeds=[0,5]"],
                 ["--set", "arms.sim.schedule=records-edge-cases"], ["--dry-run"]):
        result, _ = _train(recipe, out, *same)
        assert result.exit_code == 0, result.output
    rec = load_recipe(recipe, ["budget.steps=3"])
    with pytest.raises(SimrlError, match=r"budget.steps: 2 -> 3"):  # the trainers' own start refuses it too
        lifecycle.begin_run(rec, files, started=True, resume=True, arm="real")


def test_extend_continues_a_run_to_more_steps(trained):
    recipe, out = trained
    files = runs.RunFiles(runs.run_dir(out, "real", 0))
    result, _ = _train(recipe, out, "--set", "budget.steps=3", "--extend", "--dry-run")
    assert result.exit_code == 0 and "real seed 0: --extend continues it (budget.steps: 2 -> 3)" in result.output, result.output
    assert json.loads(files.summary.read_text())["steps"] == 2  # a dry run changes nothing
    result, lines = _train(recipe, out, "--set", "budget.steps=3", "--set", "trainer.lr=0.5", "--extend")
    assert result.exit_code == 2 and "trainer.lr: 0.003 -> 0.5" in lines[0] and len(lines) == 1
    result, _ = _train(recipe, out, "--set", "budget.steps=3", "--extend")
    assert result.exit_code == 0, result.output
    assert [json.loads(ln)["step"] for ln in files.metrics.read_text().splitlines()] == [1, 2, 3]
    assert json.loads(files.summary.read_text())["steps"] == 3
    assert yaml.safe_load(files.recipe.read_text())["budget"]["steps"] == 3
    assert yaml.safe_load((files.root / "recipe.steps-2.yaml").read_text())["budget"]["steps"] == 2


def test_changed_fields_names_each_field():
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "a.c": {}, "d": [1]}
    old = load_recipe("quickstart")
    from simrl.experiment.recipe import recipe_yaml

    steps = old.budget.steps
    new = load_recipe("quickstart", [f"budget.steps={steps + 6}", "arms.real.environment=world_model",
                                     "arms.real.backend=oracle", "seeds=[0]"])
    assert changed_fields(recipe_yaml(old), new, "sim-controlled") == [f"budget.steps: {steps} -> {steps + 6}"]
    assert changed_fields(recipe_yaml(old), new, "real") == [f"budget.steps: {steps} -> {steps + 6}",
                                                             "arm.environment: real -> world_model",
                                                             "arm.backend: (none) -> oracle"]
    assert "arms.real.environment: real -> world_model" in changed_fields(recipe_yaml(old), new)
    older = yaml.safe_load(recipe_yaml(old))
    del older["trainer"]["keep_checkpoints"], older["evaluation"]["max_tasks"]  # written before these existed
    assert changed_fields(yaml.safe_dump(older), old, "real") == []  # their defaults are no change


def test_an_ablation_of_another_recipe_names_the_fields(tmp_path):
    from simrl.experiment.ablate import run_ablation
    from simrl.experiment.recipe import recipe_yaml

    (tmp_path / "recipe.yaml").write_text(recipe_yaml(load_recipe("quickstart")))
    with pytest.raises(SimrlError, match=r"recipe.yaml differs in budget.steps, seeds\); choose another --out"):
        run_ablation(load_recipe("quickstart", ["budget.steps=2", "seeds=[0]"]), tmp_path, jobs=1)



class _Stop(Exception):
    pass


def test_a_resumed_run_is_the_run_trained_straight_through(tmp_path, monkeypatch):
    """Resuming restores the optimizer exactly (the row-sparse Adam of the embedding tables included: its
    active rows come back from the checkpoint's moments): 4 steps stopped after step 2's checkpoint and resumed
    give the weights, optimizer state and metrics of 4 steps at once."""
    data = {**json.loads(json.dumps(TINY)), "budget": {"steps": 4, "group_size": 2, "batch": 2, "max_turns": 6},
            "trainer": {"checkpoint_every": 1, "trajectories_per_step": 1, "entropy_coef": 0.01, "kl_coef": 0.04}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    recipe = load_recipe(tmp_path / "r.yaml")
    a, b = (runs.RunFiles(runs.run_dir(tmp_path / name, "real", 0)) for name in ("straight", "resumed"))
    train_arm(recipe, "real", 0, a.root, worlds=tmp_path / "worlds", run_eval=False)
    save = runs.save_checkpoint

    def save_then_stop(files, step, *args, **kwargs):
        save(files, step, *args, **kwargs)
        if step == 2:
            raise _Stop

    monkeypatch.setattr(runs, "save_checkpoint", save_then_stop)
    with pytest.raises(_Stop):
        train_arm(recipe, "real", 0, b.root, worlds=tmp_path / "worlds", run_eval=False)
    monkeypatch.setattr(runs, "save_checkpoint", save)
    train_arm(recipe, "real", 0, b.root, worlds=tmp_path / "worlds", run_eval=False, resume=True)
    timing = {"wall_s", "rollout_s", "update_s"}
    rows = [[{k: v for k, v in json.loads(ln).items() if k not in timing} for ln in f.metrics.read_text().splitlines()]
            for f in (a, b)]
    assert rows[0] == rows[1] and len(rows[0]) == 4 and all(r["grad_norm"] > 0 for r in rows[0])  # 4 Adam steps
    wa, wb = (runs.load_torch(f.final)["weights"] for f in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    oa, ob = (runs.latest_checkpoint(f)[1]["optimizer"] for f in (a, b))
    assert oa["state"].keys() == ob["state"].keys() and oa["state"]
    assert all(torch.equal(oa["state"][k][n], ob["state"][k][n]) for k in oa["state"] for n in oa["state"][k])
