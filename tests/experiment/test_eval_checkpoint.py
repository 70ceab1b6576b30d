"""`simrl eval --checkpoint RUN/final.pt` evaluates as the run did: its recipe, worlds, held-out worlds and
episode seeds, so it reproduces the run's own eval/ exactly."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml
from simrl.cli.eval import eval_
from simrl.cli.main import _Group
from typer.testing import CliRunner

from simrl.evaluation.results import load_eval, load_run_eval
from simrl.experiment import runs
from simrl.experiment.recipe import load_recipe
from simrl.trainers.embedded import train_arm

ROOT = Path(__file__).resolve().parents[2]
RECIPE = {
    "name": "tiny-eval",
    "world": {"spec": str(ROOT / "worlds" / "tiny.yaml"), "seed": 0, "eval_worlds": [5]},
    "env": {"id": "mcp-world"},
    "real": {"transport": "inprocess", "fault_rate": 0.2},
    "arms": {"sim": {"environment": "world_model", "backend": "oracle", "schedule": "mcpmark"}},
    "budget": {"steps": 2, "group_size": 2, "batch": 2, "max_turns": 8},
    "warm_start": {"demos": 3, "epochs": 2},
    "evaluation": {"split": "dev", "trials": 2, "max_tasks": 3},
    "seeds": [1],
}


def _cli() -> typer.Typer:
    app = typer.Typer(cls=_Group)
    app.command("eval")(eval_)
    app.command("noop")(lambda: None)
    return app


def test_eval_checkpoint_reproduces_the_runs_own_evaluation(tmp_path, monkeypatch):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "out"
    run = runs.run_dir(out, "sim", 1)
    train_arm(load_recipe(tmp_path / "r.yaml"), "sim", 1, run, worlds=runs.worlds_dir(out))
    own = load_run_eval(run)
    labels = sorted(p.name for p in (run / "eval").iterdir())
    assert labels == ["dev", "heldout-seed5"] and own.trials == 2
    assert own.tasks == sum(load_eval(run / "eval" / label).tasks for label in labels) >= 3
    before = {p: p.read_bytes() for p in (run / "eval").rglob("*") if p.is_file()}

    other = {**RECIPE, "world": {**RECIPE["world"], "eval_worlds": []}, "evaluation": {"split": "test"}}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    monkeypatch.chdir(tmp_path)  # no runs/tiny-eval/worlds here: the run's own worlds folder must be used
    runner = CliRunner()
    for extra in ([], ["--recipe", str(tmp_path / "other.yaml")]):
        dest = tmp_path / f"again{len(extra)}"
        result = runner.invoke(_cli(), ["eval", "--checkpoint", str(run / "final.pt"), "--out", str(dest), *extra])
        assert result.exit_code == 0, result.output
        assert "same numbers as the run's own evaluation" in result.output
        assert ("differs from the run's own recipe" in result.output) == bool(extra)
        for label in labels:  # same tasks, same episode seeds, same numbers, per world
            mine, theirs = load_eval(dest / "eval" / label), load_eval(run / "eval" / label)
            assert mine.metrics == theirs.metrics and mine.per_task == theirs.per_task
        assert load_run_eval(dest).metrics == own.metrics
    assert {p: p.read_bytes() for p in (run / "eval").rglob("*") if p.is_file()} == before  # untouched
    assert not (tmp_path / "runs").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["evaluation"]["all"] == own.metrics

    custom = runner.invoke(_cli(), ["eval", "--checkpoint", str(run / "final.pt"), "--split", "train", "-n", "2"])
    assert custom.exit_code == 0, custom.output
    assert "2 tasks x 2 trial(s)" in custom.output and not (tmp_path / "runs").exists()  # the run's recipe, worlds


def test_a_folder_not_named_seed_n_is_no_run(tmp_path):
    """The seed of a run is read from its folder name (runs.run_seed, the inverse of runs.run_dir); another name is
    one clear error, not a traceback or seed 0."""
    import pytest

    from simrl.errors import SimrlError
    from simrl.experiment.heldout import evaluate_run
    from simrl.experiment.recipe import parse_recipe

    assert runs.run_seed(runs.run_dir(tmp_path, "real", 12)) == 12
    assert runs.run_seed(tmp_path / "real" / "seed-x") is None and runs.run_seed(tmp_path / "seed-3b") is None
    folder = tmp_path / "real" / "latest"
    folder.mkdir(parents=True)
    (folder / "final.pt").write_bytes(b"")
    with pytest.raises(SimrlError, match="not a finished run"):
        evaluate_run(folder, parse_recipe(RECIPE))
