"""SIGTERM ends a simrl command cleanly: finished trajectories kept, temporary files removed, status 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def test_sigterm_keeps_finished_episodes_and_removes_temporary_files(tiny_world, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "traj.jsonl"
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    # the oracle world model copies the world's records into a temporary database per process
    proc = subprocess.Popen([sys.executable, "-m", "simrl.cli.main", "rollout", "--env", "mcp-world", "--world",
                             str(tiny_world), "--world-model", "oracle", "--split", "train", "--concurrency", "1",
                             "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 2):
        time.sleep(0.05)
    assert any(p.name.startswith("simrl-") for p in tmp.iterdir()), "the rollout made no temporary files"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert b"Traceback" not in err, err.decode()[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) >= 2 and all(r["status"] == "success" for r in rows)  # every finished line is whole
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("simrl-")]
