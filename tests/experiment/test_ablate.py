"""Ablation orchestration: the plan, parallel subprocess runs with failures, evaluation, report, resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from simrl.errors import SimrlError
from simrl.evaluation.results import load_run_eval
from simrl.experiment.ablate import arm_kind, environments, plan_runs, run_ablation, train_command
from simrl.experiment.comparisons import comparisons, primary
from simrl.experiment.heldout import evaluate_run
from simrl.experiment.jobs import RunJob, run_jobs
from simrl.experiment.recipe import load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPE = f"""
name: tiny-ablation
world: {{spec: {ROOT / "worlds" / "tiny.yaml"}, seed: 0}}
env: {{id: mcp-world}}
real: {{transport: inprocess, fault_rate: 0.05}}
arms:
  sim-uncontrolled: {{environment: world_model, backend: oracle}}
  sim-controlled: {{environment: world_model, backend: oracle, schedule: mcpmark, mode: inject}}
budget: {{steps: 2, group_size: 2, batch: 2, max_turns: 8}}
warm_start: {{demos: 2, epochs: 1}}
evaluation: {{split: dev, trials: 1, max_tasks: 2}}
seeds: [0, 1]
"""
# `simrl train` through its own Typer function, for as long as cli/main.py does not register it.
STANDIN = ("import typer\nfrom simrl.cli.main import _Group\nfrom simrl.cli.train import train\n"
           "app = typer.Typer(cls=_Group)\napp.command('train')(train)\napp.command('noop')(lambda: None)\n"
           "app(prog_name='simrl')")
FAIL = [sys.executable, "-c", "import sys; print('starting'); print('error: boom', file=sys.stderr); sys.exit(3)"]


def _train_argv(out: Path, job: RunJob) -> list[str]:
    from simrl.cli.main import app

    argv = train_command(out / "recipe.yaml", job, out, True)
    registered = any(c.name == "train" for c in app.registered_commands)
    return argv if registered else [sys.executable, "-c", STANDIN, *argv[3:]]


def test_plan_and_comparisons(tmp_path):
    data = {"name": "x", "world": {"spec": "w"}, "env": {"id": "mcp-world"}, "budget": {"steps": 1}, "seeds": [3, 4],
            "arms": {"real": {"environment": "real"}, "unc": {"environment": "world_model"},
                     "ctl": {"environment": "world_model", "schedule": "gentle"}},
            "grid": {"arm": "ctl", "schedules": ["fault-heavy"]}}
    rec = parse_recipe(data)
    jobs = plan_runs(rec, tmp_path)
    assert [(j.arm, j.seed) for j in jobs][:3] == [("real", 3), ("real", 4), ("unc", 3)] and len(jobs) == 8
    assert jobs[-1].folder == tmp_path / "ctl@fault-heavy" / "seed-4"
    assert comparisons(rec, ["untrained", "warmstart"])[:3] == [("ctl", "unc"), ("ctl@fault-heavy", "unc"),
                                                                 ("ctl", "real")]
    assert ("real", "warmstart") in comparisons(rec, ["untrained", "warmstart"])
    assert ("real", "untrained") in comparisons(rec, ["untrained"])
    every = comparisons(rec, ["untrained", "warmstart", "candidates"])  # each arm against each baseline present
    assert all((a, b) in every for a in rec.all_arms() for b in ("candidates", "warmstart", "untrained"))
    assert len(every) == len(set(every))
    assert primary(rec).model_dump() == {"a": "ctl", "b": "unc", "metric": "success", "declared": False}
    declared = parse_recipe({**data, "primary": {"a": "real", "b": "candidates"}})
    assert primary(declared).model_dump() == {"a": "real", "b": "candidates", "metric": "success", "declared": True}
    assert comparisons(declared, ["candidates"])[0] == ("real", "candidates")
    alone = parse_recipe({**data, "arms": {"real": {"environment": "real"}}, "grid": None})
    assert (primary(alone, ["untrained", "warmstart"]).a, primary(alone, ["untrained", "warmstart"]).b) == \
        ("real", "warmstart")
    ctl = environments(rec)["ctl"]
    assert ctl["kind"] == "world model (oracle) + gentle (inject)" and ctl["world_model"] == "oracle"
    assert ctl["description"].startswith("the oracle: ") and "; perturbations (inject): " in ctl["description"]
    assert arm_kind(rec.arm("ctl")) == "world model (oracle) + gentle (inject)" and arm_kind(rec.arm("real")) == "real"
    cmd = train_command(tmp_path / "r.yaml", jobs[0], tmp_path, True)
    assert cmd[1:] == ["-m", "simrl.cli.main", "train", str(tmp_path / "r.yaml"), "--arm", "real", "--seed", "3",
                       "--out", str(tmp_path), "--resume"]


def test_run_jobs_reports_failures_and_goes_on(tmp_path):
    jobs = [RunJob("a", s, tmp_path / "a" / f"seed-{s}", tmp_path / "logs" / f"a-{s}.log") for s in range(3)]
    write = ("import json, pathlib, sys; d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True); "
             "(d / 'metrics.jsonl').write_text(json.dumps({'step': 1}) + '\\n')")
    outcomes = run_jobs(jobs, lambda j: FAIL if j.seed == 1 else [sys.executable, "-c", write, str(j.folder)],
                        jobs=2, steps=1, poll=0.05)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].reason == "exit code 3: error: boom"
    assert (tmp_path / "a" / "seed-2" / "metrics.jsonl").is_file() and "starting" in jobs[1].log.read_text()


def test_sigterm_of_run_jobs_stops_the_running_children_and_starts_no_more(tmp_path):
    """2 at once of 4 long runs: SIGTERM to the ablation ends the 2 running (their process groups) and the 2
    queued never start."""
    import os
    import signal
    import subprocess
    import time

    script = (
        "import sys, time\nfrom pathlib import Path\nfrom simrl.experiment.jobs import RunJob, run_jobs\n"
        "root = Path(sys.argv[1])\n"
        "jobs = [RunJob('a', s, root / f'seed-{s}', root / 'logs' / f'a-{s}.log') for s in range(4)]\n"
        "child = ('import os, pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); '\n"
        "         'time.sleep(600)')\n"
        "run_jobs(jobs, lambda j: [sys.executable, '-c', child, str(root / f'pid-{j.seed}')], jobs=2, steps=1,"
        " poll=0.05)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("pid-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        pids = [int(p.read_text()) for p in sorted(tmp_path.glob("pid-*"))]
        assert len(pids) == 2, proc.stderr.read().decode() if proc.poll() is not None else pids
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    for pid in pids:  # gone: the stop signalled each child's group and reaped it
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert sorted(p.name for p in tmp_path.glob("pid-*")) == ["pid-0", "pid-1"]  # the queued two never started
    assert not (tmp_path / "logs" / "a-2.log").exists() and not (tmp_path / "logs" / "a-3.log").exists()


def test_bad_ablations(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE.replace("sim-uncontrolled:", "logs:"))
    with pytest.raises(SimrlError, match="folder names of an ablation"):
        run_ablation(load_recipe(tmp_path / "r.yaml"), tmp_path / "out")
    (tmp_path / "r.yaml").write_text(RECIPE)
    rec = load_recipe(tmp_path / "r.yaml")
    with pytest.raises(SimrlError, match="--jobs must be at least 1"):
        run_ablation(rec, tmp_path / "out", jobs=0)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "recipe.yaml").write_text("name: other\n")
    with pytest.raises(SimrlError, match="another recipe"):
        run_ablation(rec, tmp_path / "out")
    (tmp_path / "out" / "recipe.yaml").unlink()
    (tmp_path / "out" / "sim-controlled" / "seed-0").mkdir(parents=True)
    (tmp_path / "out" / "sim-controlled" / "seed-0" / "metrics.jsonl").write_text("")
    with pytest.raises(SimrlError, match="already exist"):
        run_ablation(rec, tmp_path / "out", resume=False)


def test_ablation_end_to_end_with_a_failed_run_then_resume(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)
    rec, out = load_recipe(tmp_path / "r.yaml"), tmp_path / "out"
    calls: list[tuple[str, int]] = []

    def first(job: RunJob) -> list[str]:
        calls.append((job.arm, job.seed))
        return FAIL if (job.arm, job.seed) == ("sim-uncontrolled", 1) else _train_argv(out, job)

    report = run_ablation(rec, out, jobs=2, command=first)
    assert sorted(calls) == sorted((a, s) for a in rec.arms for s in rec.seeds)
    unc, ctl = report["arms"]["sim-uncontrolled"], report["arms"]["sim-controlled"]
    assert unc["failed"] == {"1": "exit code 3: error: boom"} and list(unc["seeds"]) == ["0"]
    assert list(ctl["seeds"]) == ["0", "1"] and ctl["metrics"]["success"]["n"] == 2
    assert set(report["baselines"]) == {"untrained", "warmstart", "candidates"}
    assert report["comparisons"][0] == ["sim-controlled", "sim-uncontrolled"]
    p = report["primary"]
    assert (p["a"], p["b"], p["declared"]) == ("sim-controlled", "sim-uncontrolled", False)
    assert p["test"] is not None and p["test"]["paired"] is False  # sim-uncontrolled seed 1 failed: one shared seed
    assert any(d["a"] == "sim-controlled" and d["b"] == "warmstart" for d in report["secondary"])
    assert json.loads((out / "report.json").read_text()) == report
    md = (out / "report.md").read_text()
    assert "sim-uncontrolled seed 1 (exit code 3: error: boom)" in md
    assert md.startswith("# Ablation report: tiny-ablation\n\n## Primary comparison")
    assert {"final_scores.png", "learning_curves.png"} <= {p.name for p in (out / "plots").iterdir()}
    assert (out / "baselines" / "warmstart" / "seed-1" / "eval").is_dir()
    run = out / "sim-controlled" / "seed-0"  # the trainer's own evaluation == final.pt loaded and evaluated again
    before = load_run_eval(run)
    assert evaluate_run(run, rec).metrics == before.metrics
    calls.clear()
    copy = ["-c", "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True)"]

    def again_cmd(job: RunJob) -> list[str]:  # a stand-in "resumed" run: a copy of seed 0's finished run (fast)
        calls.append((job.arm, job.seed))
        return [sys.executable, *copy, str(job.folder.parent / "seed-0"), str(job.folder)]

    again = run_ablation(rec, out, jobs=2, command=again_cmd)
    assert calls == [("sim-uncontrolled", 1)]  # finished runs are skipped, the failed one runs again
    assert not again["arms"]["sim-uncontrolled"]["failed"] and again["arms"]["sim-uncontrolled"]["metrics"]["success"]["n"] == 2
    assert again["baselines"]["untrained"]["seeds"] == report["baselines"]["untrained"]["seeds"]  # reused


def test_the_report_says_what_each_arm_trains_in():
    from simrl.experiment.ablate import environments
    from simrl.experiment.recipe import load_recipe
    from simrl.perturb.schedule import load_schedule

    quick = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")
    described = {arm: env["description"] for arm, env in environments(quick).items()}
    assert described["real"] == "the real mcp-world environment (transport=inprocess, fault_rate=0.1)"
    assert "not a language model" in described["sim-uncontrolled"] and "perturbations" not in described["sim-uncontrolled"]
    schedule = " ".join(load_schedule("records-edge-cases").description.split())
    assert described["sim-controlled"].endswith(f"; perturbations (inject): {schedule}")
