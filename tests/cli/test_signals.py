"""SIGTERM ends a simrl command cleanly: finished trajectories kept, temporary files removed, status 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from simrl.testing.openai_stub import StubEndpoint


def test_sigterm_keeps_finished_episodes_and_removes_temporary_files(tiny_world, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "traj.jsonl"
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    # a policy that answers at once but takes 0.5 s a reply: the 12 tiny-world episodes take >= 6 s, so the
    # rollout is still running when the signal comes (the scripted expert finished all 12 in 0.1 s: a race)
    with StubEndpoint(lambda req: "I do not know.", delay=0.5) as ep:
        # the oracle world model copies the world's records into a temporary database per process
        proc = subprocess.Popen([sys.executable, "-m", "simrl.cli.main", "rollout", "--env", "mcp-world", "--world",
                                 str(tiny_world), "--world-model", "oracle", "--split", "train", "--concurrency", "1",
                                 "--policy", f"openai:{ep.url}#stub-model", "--out", str(out)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 180
        while (time.monotonic() < deadline and proc.poll() is None
               and not (out.exists() and out.read_text().count("\n") >= 2)):
            time.sleep(0.05)
        assert proc.poll() is None, f"the rollout ended before the signal: {proc.communicate()[1].decode()[-2000:]}"
        assert any(p.name.startswith("simrl-") for p in tmp.iterdir()), "the rollout made no temporary files"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert b"Traceback" not in err, err.decode()[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert 2 <= len(rows) < 12 and all(r["status"] == "failure" for r in rows)  # whole lines; "I do not know" fails
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("simrl-")]


def _default_sigint() -> None:
    """In the child before exec: SIGINT at its default, whatever this process inherited. A command started in the
    background by a shell without job control (``cmd &``) ignores SIGINT, its children inherit that, and `simrl`
    keeps an inherited ignore on purpose (as ``nohup`` does), so a Ctrl-C test would see no stop at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_while_a_worker_thread_prepares_the_evaluation_set_ends_train_at_once(tmp_path, signum):
    """The evaluation set is prepared in a worker thread (asyncio.to_thread), which asyncio.run waits for on the
    way out: 18 tasks x 400 trials of the scripted expert take minutes, yet SIGTERM or Ctrl-C (SIGINT) ends
    `simrl train` within seconds (the thread's rollout checks simrl.stopping between episodes)."""
    sets = ["world.entities=300", "budget.steps=1", "warm_start.demos=2", "warm_start.epochs=1", "evaluation.every=1",
            "evaluation.trials=400", "evaluation.split=train", "world.eval_worlds=[]"]
    err = tmp_path / "stderr.txt"
    with err.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "simrl.cli.main", "train", "quickstart", "--arm", "real",
                                 "--seed", "0", "--out", str(tmp_path / "out"), *(a for s in sets for a in ("--set", s))],
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=sink,
                                preexec_fn=_default_sigint)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and b"step 0/1" not in err.read_bytes():
            time.sleep(0.1)
        assert proc.poll() is None, err.read_text()[-2000:]
        time.sleep(2)  # inside the preparation: the first trial of 18 tasks alone takes longer than this
        assert not list((tmp_path / "out").rglob("eval-sets/*.json")), "the evaluation set was ready too soon"
        sent = time.monotonic()
        proc.send_signal(signum)
        proc.wait(timeout=120)
        took = time.monotonic() - sent
    text = err.read_text()
    assert proc.returncode == 128 + signum and "Traceback" not in text, (proc.returncode, text[-3000:])
    assert took < 20, f"train took {took:.0f} s to end after {signal.Signals(signum).name}"
