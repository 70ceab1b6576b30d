"""`simrl ablate --ray-address`: a local Ray head on 2 CPUs runs every training run and evaluation of a reduced
ablation as Ray tasks, and the report is the local run's, byte for byte."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.experiment.tiny_recipe import tiny_ablation

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")]
RECIPE = tiny_ablation("tiny-ray")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head --block` on 2 CPUs at 127.0.0.1 (its own process group, ended by the test); its
    workers import this checkout's simrl (PYTHONPATH)."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    log = Path(temp) / "head.log"
    with log.open("w") as out:
        head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--num-cpus",
                                 "2", "--num-gpus", "0", "--node-ip-address", "127.0.0.1", "--port", str(port),
                                 "--include-dashboard", "false", "--temp-dir", temp, "--disable-usage-stats"],
                                stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "block forever" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:  # the head and everything it started (raylet, GCS, workers): its process group only
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        try:  # Ray's head takes about 30 s to wind down after SIGTERM; nothing of it is kept, so 5 s then SIGKILL
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _ablate(recipe: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "simrl.cli.main", "ablate", str(recipe), "--out", str(out), "--jobs",
                           "2", *extra], capture_output=True, text=True, timeout=900, env=ENV)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_a_ray_ablation_writes_the_local_runs_report(ray_head, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    _ablate(recipe, tmp_path / "ray", "--ray-address", ray_head)
    _ablate(recipe, tmp_path / "local")
    ray_report, local_report = ((tmp_path / d / "report.json").read_text() for d in ("ray", "local"))
    assert ray_report == local_report  # the same numbers: the same runs, evaluations and seeds
    for arm in ("real", "sim"):  # the same folders, written by the Ray tasks
        for seed in (0, 1):
            run = tmp_path / "ray" / arm / f"seed-{seed}"
            assert (run / "summary.json").is_file() and (run / "final.pt").is_file()
            assert (tmp_path / "ray" / "logs" / f"{arm}-seed-{seed}.log").is_file()
    assert (tmp_path / "ray" / "baselines" / "untrained" / "seed-1" / "eval").exists()


def _trainers(out: Path) -> list[psutil.Process]:
    """The `simrl train` processes writing ``out``."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if "simrl.cli.main train" in line and f"--out {out}" in line:
            found.append(p)
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_a_ray_ablation_ends_its_trainers(ray_head, tmp_path, sig):
    """SIGTERM cancels the tasks (ray.cancel); kill -9 ends the Ray job, whose workers Ray kills: either way no
    trainer outlives the ablation and no queued run starts."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "budget": {**RECIPE["budget"], "steps": 400}}))
    out = tmp_path / "abl"
    ablate = subprocess.Popen([sys.executable, "-m", "simrl.cli.main", "ablate", str(recipe), "--out", str(out),
                               "--jobs", "2", "--ray-address", ray_head], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.monotonic() + 300
        while len(running := _trainers(out)) < 2:  # both CPUs of the head busy with a training run
            assert ablate.poll() is None, ablate.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no two trainers within 300 s"
            time.sleep(0.5)
        ablate.send_signal(sig)
        assert ablate.wait(timeout=120) == (128 + sig if sig == signal.SIGTERM else -sig)
        gone, alive = psutil.wait_procs(running, timeout=60)
        assert not alive, f"trainers outlived the ablation ({sig.name}): {alive}"
        time.sleep(5)
        assert not _trainers(out), "a queued run started after the ablation ended"
    finally:
        if ablate.poll() is None:
            ablate.kill()
        for p in _trainers(out):
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "127.0.0.1:notaport"])
def test_no_cluster_is_one_clear_error(tmp_path, address):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    done = subprocess.run([sys.executable, "-m", "simrl.cli.main", "ablate", str(recipe), "--out", str(tmp_path / "o"),
                           "--ray-address", address.format(port=_free_port())], capture_output=True, text=True, timeout=300,
                          env=ENV)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--ray-address 127.0.0.1:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()  # nothing created
