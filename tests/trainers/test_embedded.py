"""The embedded GRPO trainer end to end on a tiny budget: files, learning, env failures, resume after kill -9."""

from __future__ import annotations

import doctest
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from simrl.envs.base import Environment
from simrl.errors import SimrlError
from simrl.experiment import runs
from simrl.experiment.recipe import parse_recipe
from simrl.policies.scorer import ScorerPolicy
from simrl.trainers import embedded, lifecycle
from simrl.trainers.embedded import group_advantages, train_arm

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "name": "tiny-train",
    "world": {"spec": str(ROOT / "worlds" / "tiny.yaml"), "seed": 0},
    "env": {"id": "mcp-world"},
    "real": {"transport": "inprocess", "fault_rate": 0.05},
    "arms": {"real": {"environment": "real"},
             "sim": {"environment": "world_model", "backend": "oracle", "schedule": "mcpmark"}},
    "trainer": {"checkpoint_every": 2, "trajectories_per_step": 100, "lr": 0.05},
    "budget": {"steps": 4, "group_size": 4, "batch": 3, "max_turns": 8},
    "warm_start": {"demos": 4, "epochs": 2},
    "evaluation": {"trials": 1, "max_tasks": 3},
    "seeds": [0],
}


def _recipe(**patch):
    data = json.loads(json.dumps(TINY))
    for key, value in patch.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_recipe(data)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_group_advantages_by_hand():
    assert doctest.testmod(embedded).failed == 0  # group_advantages
    assert doctest.testmod(lifecycle).failed == 0  # signal_share
    # rewards 0.2, 0.4, 0.9: mean 0.5, sample std sqrt((0.09 + 0.01 + 0.16) / 2) = sqrt(0.13) = 0.360555
    got = group_advantages([0.2, 0.4, 0.9], [True, True, True])
    assert got == pytest.approx([-0.832050, -0.277350, 1.109400], abs=1e-5)
    assert group_advantages([1.0, 0.0], [True, False]) == [0.0, 0.0]  # one valid episode: nothing to compare
    assert group_advantages([], []) == []


def test_train_arm_writes_every_file_and_learns(tmp_path):
    recipe = _recipe()
    seen: list[tuple[int, str]] = []
    summary = train_arm(recipe, "sim", 0, tmp_path / "sim" / "seed-0", worlds=tmp_path / "worlds",
                        progress=lambda done, total, line: seen.append((done, line)))
    run = runs.RunFiles(tmp_path / "sim" / "seed-0")
    for path in (run.recipe, run.metrics, run.trajectories, run.warmstart, run.final, run.summary,
                 run.root / "eval" / "test" / "eval.json"):
        assert path.is_file(), path
    assert parse_recipe(yaml.safe_load(run.recipe.read_text())) == recipe
    rows = _rows(run.metrics)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(r["episodes"] == 12 for r in rows)
    assert [r["progress"] for r in rows] == [0.0, 0.25, 0.5, 0.75]
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["latest", "step-2.pt", "step-4.pt"]
    assert (run.checkpoints / "latest").read_text().strip() == "step-4.pt"
    assert {t["info"]["train_step"] for t in _rows(run.trajectories)} == {1, 2, 3, 4}
    # the metrics move: some update had a signal, and it changed the policy away from the warm start
    assert any(r["loss"] != 0 and r["grad_norm"] > 0 for r in rows)
    # a step updates exactly when one of its groups had a signal (no entropy bonus in this recipe)
    assert all(0 <= r["signal_groups"] <= 1 and (r["grad_norm"] > 0) == (r["signal_groups"] > 0) for r in rows)
    warm, final = ScorerPolicy.load(run.warmstart), ScorerPolicy.load(run.final)
    assert any(not torch.equal(a, b) for a, b in zip(warm.module.parameters(), final.module.parameters()))
    assert summary.steps == 4 and summary.episodes == 48 and summary.resumed_from is None
    assert summary.warm_start and summary.warm_start["demos"] >= 1
    assert set(summary.evaluation) == {"all", "test"} and 0 <= summary.evaluation["all"]["success"] <= 1
    assert json.loads(run.summary.read_text())["arm"] == "sim"
    assert seen[-1][0] == 4 and any("reward" in line for _, line in seen)
    with pytest.raises(SimrlError, match="already holds a run; pass --resume"):
        train_arm(recipe, "sim", 0, run.root, worlds=tmp_path / "worlds")
    assert train_arm(recipe, "sim", 0, run.root, worlds=tmp_path / "worlds", resume=True) == summary  # finished


class _Flaky(Environment):
    """Fails in ``reset`` for every episode seed divisible by 3 (a world model that went down)."""

    def __init__(self, env: Environment) -> None:
        self.env, self.env_id = env, env.env_id
        self.backend_name = getattr(env, "backend_name", "real")

    async def reset(self, task, seed=0):
        if seed % 3 == 0:
            raise ConnectionError("world model unreachable")
        return await self.env.reset(task, seed=seed)

    async def step(self, action):
        return await self.env.step(action)

    async def close(self):
        await self.env.close()


def test_env_failures_are_excluded_and_counted(tmp_path, monkeypatch):
    real_factory = runs.arm_env_factory

    def flaky_factory(*args, **kwargs):
        make = real_factory(*args, **kwargs)
        return lambda: _Flaky(make())

    monkeypatch.setattr(runs, "arm_env_factory", flaky_factory)
    recipe = _recipe(budget={"steps": 2}, warm_start={"demos": 0})
    summary = train_arm(recipe, "sim", 0, tmp_path / "run", worlds=tmp_path / "worlds", run_eval=False)
    rows = _rows(tmp_path / "run" / "metrics.jsonl")
    trajs = _rows(tmp_path / "run" / "trajectories.jsonl")  # every episode (trajectories_per_step >= 12)
    assert len(trajs) == 24
    for r in rows:
        mine = [t for t in trajs if t["info"]["train_step"] == r["step"]]
        failed = [t for t in mine if t["status"] == "env_failure"]
        assert r["env_failures"] == len(failed) == sum(t["seed"] % 3 == 0 for t in mine) > 0
        assert r["valid_episodes"] == r["episodes"] - r["env_failures"]
        assert all(t["info"]["advantage"] == 0.0 for t in failed)
        valid = [t for t in mine if t["status"] != "env_failure"]
        assert r["reward"] == pytest.approx(sum(t["reward"] for t in valid) / len(valid))
        for g in range(0, 12, 4):  # each group's advantages use its valid episodes only
            group = mine[g:g + 4]
            expected = group_advantages([t["reward"] for t in group], [t["status"] != "env_failure" for t in group])
            assert [t["info"]["advantage"] for t in group] == pytest.approx(expected)
    assert summary.env_failures == sum(r["env_failures"] for r in rows)


def test_run_folder_helpers(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "torn')
    assert runs.truncate_jsonl(path, lambda row: row["step"] <= 2) == 2
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    files = runs.RunFiles(tmp_path / "r")
    assert runs.latest_checkpoint(files) is None
    runs.save_checkpoint(files, 2, {"x": torch.ones(2)})
    runs.save_checkpoint(files, 4, {"x": torch.zeros(2)})
    (files.checkpoints / "step-4.pt").write_bytes(b"damaged")  # a damaged newest file: the previous one is used
    step, state = runs.latest_checkpoint(files)
    assert step == 2 and torch.equal(state["x"], torch.ones(2))
    assert not list(files.checkpoints.glob(".*tmp*"))
    for step in (6, 8):
        runs.save_checkpoint(files, step, {"x": torch.zeros(1)}, keep=2)
    assert sorted(p.name for p in files.checkpoints.iterdir()) == ["latest", "step-6.pt", "step-8.pt"]


def test_only_the_embedded_trainer_runs(tmp_path):
    llm = _recipe(trainer={"kind": "verl"}, policy={"kind": "llm", "model": "some/model"})
    with pytest.raises(SimrlError, match="trains the scorer policy; recipe trainer.kind is 'verl'"):
        train_arm(llm, "real", 0, tmp_path / "r")
    with pytest.raises(SimrlError, match="no arm 'nope'"):
        train_arm(_recipe(), "nope", 0, tmp_path / "r")


def _train(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "simrl.cli.main", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_resume_after_kill_9(tmp_path):
    data = json.loads(json.dumps(TINY))
    data["budget"] = {"steps": 12, "group_size": 4, "batch": 4, "max_turns": 8}
    data["trainer"] = {"checkpoint_every": 3, "trajectories_per_step": 2}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    args = [str(tmp_path / "r.yaml"), "--arm", "real", "--seed", "0", "--out", str(out), "--no-evaluate"]
    run = runs.RunFiles(runs.run_dir(out, "real", 0))
    proc = _train(args)
    deadline = time.monotonic() + 240  # generous: a loaded 2-core machine starts torch slowly
    # kill it once a step past the first checkpoint (step 3) is logged: that step must be redone, not duplicated
    while not ((run.checkpoints / "latest").exists() and run.metrics.exists()
               and len(run.metrics.read_text().splitlines()) >= 4):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = runs.latest_checkpoint(run)[0]
    assert 3 <= killed_at < 12 and not run.summary.exists()

    resumed = _train([*args, "--resume"])
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert [r["step"] for r in _rows(run.metrics)] == list(range(1, 13))  # each step exactly once
    steps = [t["info"]["train_step"] for t in _rows(run.trajectories)]
    assert sorted(set(steps)) == list(range(1, 13)) and all(steps.count(s) == 2 for s in set(steps))
    for path in run.checkpoints.glob("step-*.pt"):
        assert runs.load_torch(path)["step"] == int(path.stem.split("-")[1])
    assert (run.checkpoints / "latest").read_text().strip() == "step-12.pt"
    summary = json.loads(run.summary.read_text())
    assert summary["steps"] == 12 and summary["resumed_from"] == killed_at
    ScorerPolicy.load(run.final)


def _cli():
    import typer
    from simrl.cli.main import _Group
    from simrl.cli.train import train

    app = typer.Typer(cls=_Group)
    app.command("train")(train)
    app.callback()(lambda: None)
    return app


def test_cli_dry_run_and_bad_recipe(tmp_path):
    from typer.testing import CliRunner

    runner = CliRunner()
    result = runner.invoke(_cli(), ["train", str(ROOT / "recipes" / "quickstart.yaml"), "--dry-run",
                                    "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert "name: quickstart" in result.output and "sim-controlled" in result.output and "new" in result.output
    assert not (tmp_path / "q").exists()
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**TINY, "budget": {"steps": -1}}))
    result = runner.invoke(_cli(), ["train", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "budget.steps" in result.output
    result = runner.invoke(_cli(), ["train", str(ROOT / "recipes" / "quickstart.yaml"), "--arm", "nope"])
    assert result.exit_code == 2 and "no arm 'nope'" in result.output


def test_learner_options_log_skills_curve_and_diagnostics(tmp_path):
    """Kind-first exploration + GiGPO credit + a held-out curve: the run logs the skill rates and diagnostics
    per step and one curve point before training and every `evaluation.every` steps."""
    recipe = _recipe(policy={"explore_kinds": 0.3}, trainer={"credit": "gigpo", "checkpoint_every": 2},
                     evaluation={"every": 2, "trials": 1, "max_tasks": 3}, budget={"steps": 4, "group_size": 4,
                                                                                 "batch": 2, "max_turns": 8})
    run = runs.RunFiles(tmp_path / "r")
    train_arm(recipe, "sim", 0, run.root, worlds=tmp_path / "w", run_eval=False)
    rows = _rows(run.metrics)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["entropy"] > 0 and r["kl_warm_start"] is not None and "fault_met" in r["skills"] for r in rows)
    assert [p["step"] for p in _rows(run.root / "curve.jsonl")] == [0, 2, 4]
    turn_adv = [t["info"]["turn_advantages"] for t in _rows(run.trajectories)]
    assert all(len(a) == len(t["turns"]) for a, t in zip(turn_adv, _rows(run.trajectories)))


def test_no_evaluation_set_means_no_curve_not_a_failed_run(tmp_path):
    recipe = _recipe(evaluation={"every": 1, "trials": 1, "max_tasks": 2, "split": "test"},
                     world={"entities": 120},  # no records task in the test split of so small a world
                     budget={"steps": 1, "group_size": 2, "batch": 1, "max_turns": 6})
    run = runs.RunFiles(tmp_path / "r")
    train_arm(recipe, "real", 0, run.root, worlds=tmp_path / "w", run_eval=False)
    assert run.final.is_file() and not (run.root / "curve.jsonl").exists()


def test_fewer_collections_sets_and_restores_the_collector():
    import gc

    from simrl.trainers.embedded import fewer_collections

    before = gc.get_threshold()
    with fewer_collections():
        inside = gc.get_threshold()
        assert gc.get_freeze_count() > 0  # what existed on entry is skipped by collections
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # a cycle made inside the block is still collected
    assert inside == (100_000, *before[1:])
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
