"""``simrl train``'s library side (simrl.experiment.train_runs): the trainer's runs, the --ray-address check and
the summary table, without the CLI."""

from __future__ import annotations

import pytest
from rich.console import Console

from simrl.errors import SimrlError
from simrl.experiment import runs
from simrl.experiment.recipe import parse_recipe
from simrl.experiment.train_runs import check_ray_address, summary_table, train_runs
from simrl.trainers.lifecycle import RunSummary
from tests.experiment.tiny_recipe import tiny_ablation


def _summary(arm: str, seed: int) -> RunSummary:
    return RunSummary(recipe="r", arm=arm, seed=seed, run_dir="d", steps=2, resumed_from=None, episodes=8,
                      env_failures=1, first_reward=0.25, final_reward=0.5, final_success=0.75, wall_s=12.4,
                      warm_start=None, evaluation={"test": {"success": 0.5}})


def test_train_runs_calls_the_trainer_per_run_and_tables_the_summaries(tmp_path, monkeypatch):
    recipe = parse_recipe(tiny_ablation("tr"))
    with pytest.raises(SimrlError, match="--ray-address is for verl recipes; r.yaml uses trainer.kind 'embedded'"):
        check_ray_address(recipe, "http://head:8265", "r.yaml")
    check_ray_address(recipe, None, "r.yaml")
    calls, reported = [], []

    def trainer(rec, arm, seed, run_dir, *, resume, progress, worlds, run_eval):
        calls.append((arm, seed, run_dir, resume, worlds, run_eval))
        progress(1, 2, "step 1")
        return _summary(arm, seed)

    monkeypatch.setattr("simrl.experiment.train_runs.load_entry", lambda entry: trainer)
    summaries = train_runs(recipe, ["real", "sim"], [3], tmp_path, resume=True, run_eval=False,
                           progress=lambda arm, seed: lambda *a: reported.append((arm, seed, *a)))
    assert calls == [(a, 3, runs.run_dir(tmp_path, a, 3), True, runs.worlds_dir(tmp_path), False) for a in ("real", "sim")]
    assert reported == [("real", 3, 1, 2, "step 1"), ("sim", 3, 1, 2, "step 1")]
    console = Console(width=200, record=True)
    console.print(summary_table(recipe, summaries, tmp_path))
    row = next(line for line in console.export_text().splitlines() if "│ sim" in line)
    assert [c for c in row.split() if c != "│"] == ["sim", "3", "2", "0.250", "0.500", "75%", "1", "test", "50%",
                                                      "12", "s"]
