"""recipes/lwm-fidelity.yaml and what it relies on: fidelity beside held-out success in the report, and a
language world model that crashes or garbles during training costs counted episodes, never the run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.experiment.recipe import load_recipe, parse_recipe, resolve_files
from simrl.experiment.report_fidelity import fidelity_lines, read_fidelity
from simrl.wm.child_backend import ChildBackend
from tests.wm.trajectory_fixtures import write_trajectories

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "lwm-fidelity.yaml"
runner = CliRunner()


def test_the_recipe_declares_its_design_and_points_every_simulated_arm_at_its_fidelity(tmp_path):
    recipe = load_recipe(RECIPE)
    arms = recipe.all_arms()
    assert {n: a.world_model() for n, a in arms.items()} == {"real": "real", "sim-oracle": "oracle",
                                                             "sim-base": "llamacpp", "sim-trained": "llamacpp"}
    assert recipe.primary is not None and (recipe.primary.a, recipe.primary.b) == ("sim-trained", "sim-base")
    assert len(recipe.seeds) >= 3 and recipe.world.eval_worlds
    assert all(a.fidelity for n, a in arms.items() if a.environment == "world_model")
    assert arms["sim-trained"].model != arms["sim-base"].model  # the trained GGUF vs the packaged base
    for args in (["ablate", str(RECIPE), "--dry-run", "--out", str(tmp_path / "a")],
                 ["train", str(RECIPE), "--dry-run", "--out", str(tmp_path / "t")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "nothing was run" in result.output or "plan:" in result.output


def test_wm_eval_intervals_and_the_report_section(tmp_path, tiny_world):
    """A real `simrl wm eval` (oracle and the baselines) gives intervals over transitions; an arm naming it
    shows that fidelity beside its held-out success; a missing result is said, not a failure."""
    traj = write_trajectories("mcp-world", tmp_path / "t.jsonl", world=tiny_world, n=3)
    out = tmp_path / "fid"
    done = subprocess.run([sys.executable, "-m", "simrl.cli.main", "wm", "eval", "--trajectories", str(traj),
                           "--world", str(tiny_world), "--world-model", "oracle", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = json.loads((out / "scores.json").read_text())
    rep = scores["repeat-previous"]
    low, high = rep["ci"]["overall"]
    assert rep["n"] >= 2 and low <= rep["overall"] <= high
    assert "overall 95% CI" in (out / "scores.md").read_text()
    got = read_fidelity(f"{out}#repeat-previous")
    assert (got["overall"], got["ci"], got["n"]) == (rep["overall"], [low, high], rep["n"])
    assert "no scored world model 'nope'" in read_fidelity(f"{out}#nope")["missing"]
    assert "no " in read_fidelity(f"{tmp_path / 'absent'}#x")["missing"]
    success = {"mean": 0.5, "low": 0.25, "high": 0.75, "n": 3, "level": 0.95, "df": 2.0, "degenerate": False}
    report = {"arms": {"real": {"world_model": "real", "metrics": {"success": success}},
                       "sim": {"world_model": "llamacpp", "metrics": {"success": success}, "fidelity": got}}}
    lines = fidelity_lines(report)
    row = next(line for line in lines if line.startswith("| sim |"))
    assert f"{rep['overall']:.1f} [{low:.1f}, {high:.1f}]" in row and "0.50 [0.25, 0.75]" in row
    assert fidelity_lines({"arms": {"real": report["arms"]["real"]}}) == []


def test_a_crashing_and_garbling_world_model_never_ends_a_training_run(tmp_path, monkeypatch):
    """The world model (a real child process) segfaults on two calls and answers garbage twice in a row (the
    re-sample too) on two others during
    `train_arm`: the run trains every step, counts the environment failures and the unparsed answers."""
    from simrl.trainers.embedded import train_arm
    from simrl.wm import factory

    def stub(**options):
        backend = ChildBackend("tests.wm.stub_engine:StubEngine",
                               {"counter": str(tmp_path / "calls"), "crash_at": [2, 7], "garble_at": [4, 5, 9, 10]},
                               max_restarts=0)
        backend.name, backend.model = "llamacpp", "stub"
        return backend

    monkeypatch.setitem(factory.MAKERS, "llamacpp", stub)
    data = yaml.safe_load(RECIPE.read_text())
    arm = {"environment": "world_model", "backend": "llamacpp", "model": str(tmp_path / "stub.gguf"),
           "max_tokens": 16}
    data |= {"arms": {"sim-lm": arm}, "budget": {"steps": 3, "group_size": 2, "batch": 1, "max_turns": 3},
             "warm_start": {"demos": 0}, "seeds": [0], "primary": None,
             "world": data["world"] | {"eval_worlds": []}}
    recipe = resolve_files(parse_recipe(data), RECIPE.parent)
    run = tmp_path / "run"
    try:
        train_arm(recipe, "sim-lm", 0, run, worlds=tmp_path / "worlds", run_eval=False)
    finally:
        for key, backend in list(factory._backends.items()):
            if getattr(backend, "model", None) == "stub":
                asyncio.run(backend.close())
                factory._backends.pop(key)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trajs = [json.loads(line) for line in (run / "trajectories.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]  # every step trained
    assert sum(m["env_failures"] for m in metrics) == 2 == sum(t["status"] == "env_failure" for t in trajs)
    assert sum(m["wm_unparsed"] for m in metrics) >= 1 and sum(t["info"]["wm_unparsed"] for t in trajs) >= 1
    assert int((tmp_path / "calls").read_text()) >= 9


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


SMOKE = ROOT / "scripts" / "gpu_smoke.sh"


@pytest.mark.skipif(_has_cuda(), reason="a GPU is visible: the smoke tests would run (test_gpu_smoke_lwm)")
@pytest.mark.parametrize("mode", [[], ["lwm"]], ids=["verl", "lwm"])
def test_gpu_smoke_skips_cleanly_without_a_gpu(mode, tmp_path):
    done = subprocess.run(["bash", str(SMOKE), *mode], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SKIP: no CUDA GPU") and len(done.stdout.splitlines()) == 1


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
def test_gpu_smoke_lwm(tmp_path):
    """On a GPU machine: the world-model loop, vLLM serving the trained model, wm eval and 2 TRL steps."""
    done = subprocess.run(["bash", str(SMOKE), "lwm", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=3600, env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    if done.stdout.startswith("SKIP:"):  # a GPU without vLLM / TRL: nothing ran, so not a pass
        pytest.skip(done.stdout.strip())
    assert "lwm smoke test passed" in done.stdout
