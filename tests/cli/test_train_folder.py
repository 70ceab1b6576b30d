"""On a real `simrl train` folder: `simrl report` builds the report from the runs (a folder, one run, a run
without evaluation), `simrl eval --samples` prints and saves sample episodes, and `simrl ablate --dry-run` shows
the plan (new vs finished runs, baselines, evaluation size, time from the constants or the runs) and runs nothing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.evaluation.results import load_run_eval
from simrl.experiment.ablate_plan import SECONDS_PER_TURN

ROOT = Path(__file__).resolve().parents[2]
RECIPE = {
    "name": "tiny-train-folder",
    "world": {"spec": str(ROOT / "worlds" / "tiny.yaml"), "seed": 0, "eval_worlds": [1000]},
    "env": {"id": "mcp-world"},
    "real": {"transport": "inprocess"},
    "arms": {"real": {"environment": "real"},
             "sim": {"environment": "world_model", "backend": "oracle", "schedule": "mcpmark"}},
    "budget": {"steps": 2, "group_size": 2, "batch": 2, "max_turns": 8},
    "warm_start": {"demos": 3, "epochs": 2},
    "evaluation": {"split": "test", "trials": 1, "max_tasks": 3},
    "primary": {"a": "sim", "b": "real", "metric": "success"},
    "seeds": [0, 1],
}
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """``(recipe file, train folder)`` of ``simrl train`` on every arm x seed (2 x 2 runs)."""
    root = tmp_path_factory.mktemp("train")
    recipe = root / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    for seed in ("0", "1"):  # simrl train runs every arm of one seed
        done = runner.invoke(app, ["train", str(recipe), "--seed", seed, "--out", str(root / "out")])
        assert done.exit_code == 0, done.output
    return recipe, root / "out"


def test_report_of_a_train_folder(trained, tmp_path):
    _, out = trained
    folder = tmp_path / "out"
    shutil.copytree(out, folder)
    done = runner.invoke(app, ["report", str(folder)])
    assert done.exit_code == 0, done.output
    report = json.loads((folder / "report.json").read_text())
    assert sorted(report["arms"]) == ["real", "sim"] and report["baselines"] == {}
    assert all(sorted(e["seeds"]) == ["0", "1"] for e in report["arms"].values())
    assert report["primary"]["test"] is not None and report["primary"]["test"]["paired"]
    assert (folder / "report.md").is_file() and (folder / "plots" / "learning_curves.png").is_file()
    shutil.rmtree(folder / "sim" / "seed-1" / "eval")  # a run that did not evaluate: listed, left out
    assert runner.invoke(app, ["report", str(folder)]).exit_code == 0
    report = json.loads((folder / "report.json").read_text())
    assert sorted(report["arms"]["sim"]["seeds"]) == ["0"] and "no held-out evaluation" in report["arms"]["sim"]["failed"]["1"]
    one = folder / "real" / "seed-0"
    assert runner.invoke(app, ["report", str(one)]).exit_code == 0
    assert list(json.loads((one / "report.json").read_text())["arms"]) == ["real"]
    bad = runner.invoke(app, ["report", str(tmp_path)])
    assert bad.exit_code == 2 and "no report.json" in bad.output


def test_eval_prints_and_saves_sample_episodes(trained, tmp_path):
    _, out = trained
    done = runner.invoke(app, ["eval", "--checkpoint", str(out / "sim" / "seed-0" / "final.pt"), "--samples", "2",
                               "--out", str(tmp_path / "ev")])
    assert done.exit_code == 0, done.output
    assert "sample 1/2" in done.output and "sample 2/2" in done.output and "  user: " in done.output
    rows = [json.loads(line) for line in (tmp_path / "ev" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["messages"][1]["role"] == "user" for r in rows)
    quiet = runner.invoke(app, ["eval", "--policy", "expert", "--env", "mcp-world", "--world",
                                str(next((out / "worlds").glob("tiny-seed0-*"))), "-n", "1", "--samples", "0"])
    assert quiet.exit_code == 0 and "sample" not in quiet.output


def test_ablate_dry_run_shows_the_plan_and_runs_nothing(trained, tmp_path):
    recipe, out = trained
    fresh = tmp_path / "fresh"
    done = runner.invoke(app, ["ablate", str(recipe), "--out", str(fresh), "--dry-run", "--jobs", "2"])
    assert done.exit_code == 0, done.output
    assert not fresh.exists()
    assert "runs: 4 (2 arm(s): real, sim x 2 seed(s)): 0 finished, 0 partly trained, 4 new" in done.output
    assert "baselines: candidates, warmstart, untrained x 2 seed(s)" in done.output
    assert "10 evaluation(s) to do" in done.output  # 4 runs + 3 baselines x 2 seeds
    planned = int(re.search(r"evaluation: about (\d+) tasks", done.output).group(1))
    evaluated = load_run_eval(out / "real" / "seed-0").tasks  # what the runs evaluated on (unsolvable ones dropped)
    assert evaluated <= planned <= evaluated + 2
    assert f"{SECONDS_PER_TURN * 1000:.1f} ms per turn" in done.output
    again = runner.invoke(app, ["ablate", str(recipe), "--out", str(out), "--dry-run"])
    assert again.exit_code == 0, again.output
    assert "4 finished" in again.output and "measured on 4 run(s)" in again.output
    assert "6 evaluation(s) to do" in again.output  # the runs evaluated themselves; the baselines did not
    assert not (out / "report.json").exists() and not (out / "baselines").exists()
