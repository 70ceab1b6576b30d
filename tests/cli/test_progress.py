"""Progress off a terminal: plain lines with a remaining-time estimate, at once and every N seconds (a log
file of `simrl train`, as under nohup / SLURM / CI), and the ablation's one overall bar."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

from rich.console import Console

from simrl.experiment.jobs import RunJob, run_jobs
from simrl.progress import LineProgress, field_column, progress_bar

LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (?P<what>.+?): (?P<done>\d+)/(?P<total>\d+) \(\d+%\) elapsed \d+:\d\d:\d\d "
                  r"eta (?:\d+:\d\d:\d\d|\?)")


ETA = re.compile(r" eta \d+:\d\d:\d\d")


QUICK = ["seeds=[0]", "budget.steps=4", "world.entities=100", "world.eval_worlds=[1000]", "evaluation.split=dev",
         "evaluation.max_tasks=1", "warm_start.demos=2", "budget.group_size=2"]
"""`simrl train quickstart` as the issue runs it (one seed, 4 steps), its world and evaluation made small."""


def test_train_log_gets_plain_progress_lines_early_and_per_step(tmp_path):
    """`COLUMNS=80 simrl train quickstart --set seeds=[0] --set budget.steps=4 > log 2>&1` (a batch job): a line
    at once, one per step with its ETA, the summary table's arm names and evaluation labels whole."""
    log = tmp_path / "train.log"
    env = {**os.environ, "SIMRL_PROGRESS_EVERY": "600", "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    sets = [a for kv in QUICK for a in ("--set", kv)]
    with log.open("w") as f:  # stdout and stderr to a file: not a terminal
        proc = subprocess.Popen([sys.executable, "-m", "simrl.cli.main", "train", "quickstart", *sets,
                                 "--out", str(tmp_path / "out")], stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        early = None
        while proc.poll() is None and early is None:
            early = next((ln for ln in log.read_text().splitlines() if LINE.match(ln)), None)
            time.sleep(0.05)
        assert early is not None, log.read_text()
        assert LINE.match(early)["what"] == "real seed 0" and LINE.match(early)["done"] == "0"  # before any step
    finally:
        assert proc.wait(timeout=600) == 0, log.read_text()
    text = log.read_text()
    assert "\r" not in text and "\x1b[" not in text  # plain lines, no live-bar redraws
    lines = [m for ln in text.splitlines() if (m := LINE.match(ln))]
    arms = ("real", "sim-uncontrolled", "sim-controlled")
    for arm in arms:
        stepped = [m for m in lines if m["what"] == f"{arm} seed 0" and m["done"] != "0"]
        assert [m["done"] for m in stepped][:4] == ["1", "2", "3", "4"]  # a line per step, not every 600 s
        assert all(ETA.search(m.string) for m in stepped), stepped  # the ETA on every line from the first step
        assert stepped[-1]["total"] == "4" and stepped[-1].string.split(" eta ")[1].startswith("0:00:00")
        assert any("reward" in m.string for m in stepped)  # the step's metrics line rides along
    table = text[text.index("quickstart: 3 run(s)"):]
    assert "…" not in table and max(map(len, table.splitlines())) <= 80
    rows = [ln.split()[0] for ln in table.splitlines() if ln.split() and ln.split()[0] in arms]
    assert rows == list(arms) and table.count("heldout-seed1000") == 3  # whole names, each on one line


def test_ablation_has_one_overall_bar(tmp_path):
    jobs = [RunJob("a", s, tmp_path / "a" / f"seed-{s}", tmp_path / "logs" / f"a-{s}.log") for s in range(3)]
    write = ("import pathlib, sys, time; d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True); "
             "[(d / 'metrics.jsonl').open('a').write('{}\\n') or time.sleep(0.1) for _ in range(2)]")
    fail = [sys.executable, "-c", "import sys; print('error: boom'); sys.exit(3)"]
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert not console.is_terminal
    os.environ["SIMRL_PROGRESS_EVERY"] = "0.1"
    try:
        outcomes = run_jobs(jobs, lambda j: fail if j.seed == 1 else [sys.executable, "-c", write, str(j.folder)],
                            jobs=2, steps=2, console=console, poll=0.05)
    finally:
        del os.environ["SIMRL_PROGRESS_EVERY"]
    assert [o.ok for o in outcomes] == [True, False, True]
    lines = [m for ln in out.getvalue().splitlines() if (m := LINE.match(ln))]
    assert lines and {m["what"] for m in lines} == {"training 3 runs (steps)"}  # one bar, not one per run
    assert lines[0]["done"] == "0" and lines[-1]["done"] == "4" and lines[-1]["total"] == "6"
    assert "runs 3/3 done, 0 running, 1 failed" in lines[-1].string
    assert "a seed 1: FAILED: exit code 3: error: boom" in out.getvalue()


def test_progress_bar_on_a_terminal_keeps_its_eta_beside_long_metrics():
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    bar = progress_bar(field_column("line"), console=console)
    assert not isinstance(bar, LineProgress)
    metrics = "reward 0.412  success 40%  turns 7.2  loss +0.013  env-fail 3  perturb 12  signal 50%  wm-unparsed 2"
    task = bar.add_task("sim-uncontrolled seed 0", total=24, line=metrics)
    bar.update(task, completed=5)
    console.print(bar.make_tasks_table(bar.tasks))
    first, *rest = console.file.getvalue().splitlines()
    assert "sim-uncontrolled seed 0" in first and re.search(r"5/24 \d:\d\d:\d\d eta -:--:--", first), first
    assert "signal 50%" in " ".join([first, *rest]) and "…" not in console.file.getvalue()  # metrics wrap, not cut
    assert isinstance(progress_bar(console=Console(file=io.StringIO())), LineProgress)  # a file
    narrow = Console(file=io.StringIO(), force_terminal=True, width=80)
    assert isinstance(progress_bar(console=narrow), LineProgress)  # a narrow terminal: plain lines too


def test_plain_lines_per_step_have_an_eta_from_the_first_step():
    out = io.StringIO()
    with progress_bar(field_column("line"), console=Console(file=out), per_step=True, every=600) as bar:
        task = bar.add_task("a seed 0", total=3, line="preparing")
        bar.update(task, line="warm start")
        time.sleep(0.05)
        for step in range(1, 4):
            bar.update(task, completed=step, line=f"reward {step}")
            time.sleep(0.02)
    lines = [m for ln in out.getvalue().splitlines() if (m := LINE.match(ln))]
    assert [m["done"] for m in lines] == ["0", "0", "1", "2", "3", "3"]  # added, a phase, each step, the end
    assert all(ETA.search(m.string) for m in lines[2:]) and " eta ?" in lines[0].string
    assert lines[2].string.endswith("| reward 1")
