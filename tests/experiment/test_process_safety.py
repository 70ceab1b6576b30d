"""Killing and racing trainers: children die with `simrl ablate` (even on kill -9), one writer per run and
ablation folder (a second is refused naming the holder's pid), reports refuse runs with duplicated steps, and
a killed trainer's temporary folders live (and are cleaned) under its run folder. Real processes, real signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from simrl.errors import SimrlError
from simrl.experiment import locks, runs

ROOT = Path(__file__).resolve().parents[2]
RECIPE = {
    "name": "process-safety",
    "world": {"spec": str(ROOT / "worlds" / "tiny.yaml"), "seed": 0},
    "env": {"id": "mcp-world"},
    "real": {"transport": "inprocess"},
    "arms": {"sim": {"environment": "world_model", "backend": "oracle"}},
    "trainer": {"checkpoint_every": 1, "trajectories_per_step": 1},
    "budget": {"steps": 400, "group_size": 2, "batch": 1, "max_turns": 6},
    "warm_start": {"demos": 0},
    "evaluation": {"trials": 1, "max_tasks": 1},
    "seeds": [0, 1],
}


def _simrl(args: list[str], tmpdir: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmpdir)}
    return subprocess.Popen([sys.executable, "-m", "simrl.cli.main", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _holder(folder: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    """Wait until ``folder`` is locked and return the holder's pid (from the lock file)."""
    deadline = time.monotonic() + timeout
    while True:
        text = (folder / locks.LOCK).read_text() if (folder / locks.LOCK).is_file() else ""
        if text.strip():
            return int(text)
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{folder} not locked within {timeout} s"
        time.sleep(0.05)


def _refused(args: list[str], tmpdir: Path, pid: int) -> None:
    proc = _simrl(args, tmpdir)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # `train` shows its bar first
    assert len(errors) == 1 and f"pid {pid}" in errors[0] and "Traceback" not in err, err


def _ours(tmpdir: Path) -> list[str]:
    """simrl's temporary folders in ``tmpdir`` (torch keeps caches there too)."""
    return [p.name for p in tmpdir.iterdir() if p.name.startswith("simrl-")]


DESCENDANT_KINDS = {  # what `simrl ablate` can leave behind, by a marker of its command line
    "trainer": "simrl.cli.main train",  # ablate's `simrl train` runs (PR_SET_PDEATHSIG at Popen)
    "mcp server": "serve mcp",  # a trainer's stdio record server (its own session: simrl.deathsig.wrap)
    "evaluation worker": "multiprocessing.spawn",  # ablate's evaluation pool (die_with in its initializer)
    "resource tracker": "multiprocessing.resource_tracker",  # the pool's tracker: ends when its pipe closes
    "world-model child": "simrl.wm.child_backend",  # a native backend's process (polls getppid every 0.5 s)
}


def _kind(proc: psutil.Process) -> str:
    line = " ".join(proc.cmdline())
    return next((k for k, marker in DESCENDANT_KINDS.items() if marker in line), f"other: {line[:120]}")


def _descendants(root: int) -> dict[psutil.Process, str]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return {p: _kind(p) for p in psutil.Process(root).children(recursive=True)}
    return {}


def _alive_after(procs: dict[psutil.Process, str], seconds: float = 2.0) -> list[str]:
    """The processes of ``procs`` still running ``seconds`` after now (zombies count as gone)."""
    time.sleep(seconds)
    alive = []
    for p, kind in procs.items():
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{kind} (pid {p.pid})")
    return alive


def _recipe(tmp_path: Path, **patch) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, **patch}))
    return path


def test_kill_9_of_ablate_kills_its_trainers_and_writers_are_exclusive(tmp_path):
    recipe, out, tmp = _recipe(tmp_path), tmp_path / "abl", tmp_path / "sys-tmp"
    tmp.mkdir()
    ablate = _simrl(["ablate", str(recipe), "--out", str(out), "--jobs", "2"], tmp)
    started: list[psutil.Process] = [psutil.Process(ablate.pid)]
    try:
        assert _holder(out, ablate) == ablate.pid
        trainers = [_holder(runs.run_dir(out, "sim", s), ablate) for s in (0, 1)]
        started += [psutil.Process(p) for p in trainers]
        assert {p.pid for p in psutil.Process(ablate.pid).children()} == set(trainers)
        # a second ablation of the same folder, and a second trainer of a run, are refused naming the holder
        _refused(["ablate", str(recipe), "--out", str(out)], tmp, ablate.pid)
        _refused(["train", str(out / "recipe.yaml"), "--arm", "sim", "--seed", "0", "--out", str(out), "--resume"],
                 tmp, trainers[0])
        procs = _descendants(ablate.pid)
        ablate.send_signal(signal.SIGKILL)
        ablate.wait()
        alive = _alive_after(procs)
        assert not alive, f"outlived `simrl ablate` (kill -9) by 2 s: {alive}"
    finally:  # only what this test started (not pytest's other children, e.g. multiprocessing's tracker)
        for p in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in p.children(recursive=True) + [p]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.kill()
    assert not _ours(tmp), "temporary folders left outside the run folders"


def test_kill_9_of_ablate_while_its_first_run_trains_leaves_no_descendant(tmp_path):
    """--jobs 1, the real arm over stdio record servers: trainer and servers are gone 2 s after kill -9,
    and no process names the ablation folder (the evaluation phase's kinds: the test below)."""
    recipe = _recipe(tmp_path, arms={"real": {"environment": "real"}}, real={"transport": "stdio"})
    out, tmp = tmp_path / "abl", tmp_path / "sys-tmp"
    tmp.mkdir()
    ablate = _simrl(["ablate", str(recipe), "--out", str(out), "--jobs", "1"], tmp)
    try:
        run = runs.RunFiles(runs.run_dir(out, "real", 0))
        deadline, procs = time.monotonic() + 180, {}
        while not (run.metrics.is_file() and "mcp server" in procs.values()):  # training, a server up
            assert ablate.poll() is None, ablate.communicate()
            assert time.monotonic() < deadline, f"no training step with a server within 180 s: {procs}"
            procs = _descendants(ablate.pid)
            time.sleep(0.05)
        assert set(procs.values()) <= set(DESCENDANT_KINDS), procs  # nothing of a kind the test does not know
        ablate.send_signal(signal.SIGKILL)
        ablate.wait()
        alive = _alive_after(procs)
        assert not alive, f"outlived `simrl ablate` (kill -9) by 2 s: {alive}"
        naming = [p.pid for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
        assert not naming, f"processes still name {out}: {naming}"
    finally:
        for p in [psutil.Process(ablate.pid), *procs] if ablate.poll() is None else procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def test_kill_9_of_train_leaves_temporary_folders_only_in_its_run_which_resume_clears(tmp_path):
    recipe = _recipe(tmp_path, budget={**RECIPE["budget"], "steps": 3}, seeds=[0])
    out, tmp = tmp_path / "out", tmp_path / "sys-tmp"
    tmp.mkdir()
    run = runs.RunFiles(runs.run_dir(out, "sim", 0))
    args = ["train", str(recipe), "--arm", "sim", "--seed", "0", "--out", str(out), "--no-evaluate"]
    proc = _simrl(args, tmp)
    deadline = time.monotonic() + 120
    while not (run.metrics.is_file() and run.metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _ours(tmp), "kill -9 left temporary folders outside the run"
    assert any((run.root / "tmp").glob("simrl-wm-*")), "the episodes' records were not under the run folder"
    resumed = _simrl([*args, "--resume"], tmp)
    out_, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert not (run.root / "tmp").exists() and not _ours(tmp)
    assert [json.loads(x)["step"] for x in run.metrics.read_text().splitlines()] == [1, 2, 3]


def test_lock_names_the_holder_and_is_released_on_exit(tmp_path):
    with locks.lock_folder(tmp_path / "run", "run folder"):
        with pytest.raises(SimrlError, match=f"pid {os.getpid()}"):
            with locks.lock_folder(tmp_path / "run", "run folder"):
                pass
    with locks.lock_folder(tmp_path / "run", "run folder"):  # released: free again
        pass


def test_report_refuses_a_run_with_duplicated_steps(tmp_path):
    from simrl.experiment.comparisons import PrimaryChoice
    from simrl.experiment.report import build_report, render_report, write_report
    from tests.experiment.test_report import _eval

    run = tmp_path / "sim" / "seed-0"
    run.mkdir(parents=True)
    steps = [1, 2, 3, 2, 3]  # a second trainer logged steps 2-3 again
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward": 0.1}) + "\n" for s in steps))
    report = build_report({"sim": {0: _eval(0.5, 0)}, "real": {0: _eval(0.4, 0)}}, {}, comparisons=[("sim", "real")],
                          primary=PrimaryChoice(a="sim", b="real"), run_dirs={"sim": {0: "sim/seed-0"}, "real": {0: None}}, bootstrap_reps=100)
    with pytest.raises(SimrlError, match=r"step\(s\) 2, 3 logged more than once"):
        write_report(report, tmp_path)
    proc = _simrl(["report", str(tmp_path)], tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and "metrics.jsonl" in err, err
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward": 0.1}) + "\n" for s in (1, 2, 3)))
    assert render_report(tmp_path)[0].name == "report.md"


PARENT = """
import os, sys, time, multiprocessing
from concurrent.futures import ProcessPoolExecutor
from simrl.experiment.jobs import _eval_worker

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_eval_worker,
                               initargs=(os.getpid(),))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 600)
    time.sleep(600)
"""


def test_kill_9_of_ablate_during_evaluations_leaves_no_evaluation_worker(tmp_path):
    """ablate's evaluation processes (spawned workers, and the pool's resource tracker) die with it."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    procs = {}
    try:
        worker = int(parent.stdout.readline())  # a worker, busy with a 600 s job next
        time.sleep(0.5)
        procs = _descendants(parent.pid)
        assert worker in [p.pid for p in procs]
        assert set(procs.values()) == {"evaluation worker", "resource tracker"}, procs
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        alive = _alive_after(procs)
        assert not alive, f"outlived the parent (kill -9) by 2 s: {alive}"
    finally:
        parent.kill()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
