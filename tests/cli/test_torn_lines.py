"""A trajectory file whose last line is torn (its writer was killed mid-line): appending starts a new line,
and readers skip the torn line and report it with its number instead of failing or gluing records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from simrl.wm.transitions import load_transitions


def _rollout(world, out, n: int, append: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "simrl.cli.main", "rollout", "--env", "mcp-world", "--world",
                             str(world), "--split", "train", "-n", str(n), "--concurrency", "1", "--out", str(out)]
                            + (["--append"] if append else []),
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_append_after_a_torn_line_starts_a_new_line_and_readers_skip_it(tiny_world, tmp_path):
    out = tmp_path / "traj.jsonl"
    first = _rollout(tiny_world, out, 2)
    assert first.wait(timeout=300) == 0, first.communicate()[1].decode()[-2000:]
    whole = out.read_text().splitlines()
    assert len(whole) == 2
    with out.open("a") as f:  # what a kill -9 in the middle of a write leaves
        f.write(whole[0][: len(whole[0]) // 2])
    again = _rollout(tiny_world, out, 2, append=True)
    assert again.wait(timeout=300) == 0, again.communicate()[1].decode()[-2000:]
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and lines[2] == whole[0][: len(whole[0]) // 2]  # the torn line stays on its own
    for i in (0, 1, 3, 4):
        assert json.loads(lines[i])["task_id"]  # every appended record is whole
    skipped: Counter = Counter()
    transitions = load_transitions(out, world=tiny_world, skipped=skipped)
    assert transitions and skipped == Counter({"torn line (a record cut short) traj.jsonl:3": 1})


def test_kill_9_mid_rollout_then_append(tiny_world, tmp_path):
    """A real kill -9 during a rollout, then a second rollout appending to the same file: every line parses
    or is the (single, reported) torn one."""
    out = tmp_path / "traj.jsonl"
    proc = _rollout(tiny_world, out, 30)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.stat().st_size > 0):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = _rollout(tiny_world, out, 1, append=True)
    assert again.wait(timeout=300) == 0, again.communicate()[1].decode()[-2000:]
    bad = []
    for n, line in enumerate(out.read_text().splitlines(), 1):
        try:
            json.loads(line)
        except ValueError:
            bad.append(n)
    assert len(bad) <= 1 and json.loads(out.read_text().splitlines()[-1])["task_id"]
    skipped: Counter = Counter()
    load_transitions(out, world=tiny_world, skipped=skipped)
    assert sum(skipped[k] for k in skipped if k.startswith("torn line")) == len(bad)
