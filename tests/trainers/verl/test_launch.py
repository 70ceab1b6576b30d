"""`simrl train` on verl recipes: the job folder (--dry-run), local runs, Ray submission, user errors."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.errors import SimrlError
from simrl.experiment.recipe import load_recipe
from simrl.trainers.verl import launch
from simrl.trainers.verl.config import hydra_value
from tests.conftest import ROOT

GPU_RECIPES = sorted((ROOT / "recipes" / "gpu").glob("*.yaml"))
SMOKE = ROOT / "recipes" / "gpu" / "tiny-smoke.yaml"
runner = CliRunner()


def dry_run(recipe: Path, out: Path, *extra: str):
    result = runner.invoke(app, ["train", str(recipe), "--dry-run", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return result


def job_files(job: Path) -> dict[str, Path]:
    return {p.name: p for p in job.iterdir() if p.is_file()}


def parquet_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def normalised(overrides: Path, out: Path, arm: str) -> str:
    """overrides.txt with its arm's own names (run folder, tool config, experiment) made generic, and
    Hydra's quotes dropped (a grid arm's name, ``sim-controlled@gentle``, makes its paths quoted)."""
    return (overrides.read_text().replace("'", "").replace(str(out.resolve() / arm), "OUT/ARM")
            .replace(f"tools-{arm}.yaml", "tools-ARM.yaml").replace(f"experiment_name={arm}-seed", "experiment_name=ARM-seed"))


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=[p.stem for p in GPU_RECIPES])
def test_dry_run_writes_each_arm_job_differing_only_in_the_tool_config(recipe, tmp_path):
    """Every shipped GPU recipe, as shipped, through the real CLI: each arm's job folder is complete,
    command.sh holds exactly overrides.txt, and the arms' jobs differ only in their tool config."""
    out = tmp_path / "out"
    result = dry_run(recipe, out)
    loaded = load_recipe(recipe)
    arms = list(loaded.all_arms())
    if loaded.trainer.kind != "verl":  # e.g. a one-GPU TRL recipe: its dry run shows the plan, writes no job
        assert "plan:" in result.output and not list(out.glob("*/seed-*/verl"))
        return
    jobs = {arm: out / arm / "seed-0" / "verl" for arm in arms}
    for arm, job in jobs.items():
        files = job_files(job)
        assert {"train.parquet", "val.parquet", f"tools-{arm}.yaml", "recipe.yaml", "overrides.txt",
                "command.sh"} <= set(files)
        argv = shlex.split(files["command.sh"].read_text().split("exec ", 1)[1].replace("\\\n", " "))
        overrides = files["overrides.txt"].read_text().splitlines()
        assert argv[:3] == [sys.executable, "-m", "verl.trainer.main_ppo"] and argv[-1] == "$@"
        assert argv[3:-1] == overrides and shlex.join(argv[:-1]) in result.output  # printed as written
        tool_config = hydra_value(str(job.resolve() / f"tools-{arm}.yaml"))  # quoted where the arm name needs it
        assert f"actor_rollout_ref.rollout.multi_turn.tool_config_path={tool_config}" in overrides
        tools = yaml.safe_load(files[f"tools-{arm}.yaml"].read_text())["tools"]
        assert tools and all(t["config"]["arm_name"] == arm for t in tools)
        assert os.access(files["command.sh"], os.X_OK) and len(parquet_rows(files["train.parquet"])) > 0
    first, *others = arms
    base = job_files(jobs[first])
    for arm in others:
        files = job_files(jobs[arm])
        assert parquet_rows(files["train.parquet"]) == parquet_rows(base["train.parquet"])
        assert parquet_rows(files["val.parquet"]) == parquet_rows(base["val.parquet"])
        assert files["recipe.yaml"].read_text() == base["recipe.yaml"].read_text()
        assert normalised(files["overrides.txt"], out, arm) == normalised(base["overrides.txt"], out, first)
        assert (yaml.safe_load(files[f"tools-{arm}.yaml"].read_text())
                != yaml.safe_load(base[f"tools-{first}.yaml"].read_text()))  # the one difference


def test_command_sh_runs_as_written(tmp_path):
    """`bash command.sh --cfg job` (arguments are appended) runs verl's entrypoint, which composes the
    job's config and stops."""
    pytest.importorskip("verl", reason="command.sh runs verl's entrypoint; install simrl[verl]")
    out = tmp_path / "out"
    dry_run(SMOKE, out, "--arm", "sim-controlled")
    job = out / "sim-controlled" / "seed-0" / "verl"
    proc = subprocess.run(["bash", str(job / "command.sh"), "--cfg", "job"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["actor_rollout_ref"]["rollout"]["multi_turn"]["tool_config_path"] == str(
        job.resolve() / "tools-sim-controlled.yaml")
    assert cfg["trainer"]["n_gpus_per_node"] == 1 and cfg["trainer"]["val_before_train"] is False
    assert cfg["actor_rollout_ref"]["model"]["path"] == str(Path("runs/tiny-model").resolve())


def test_resume_reuses_the_job_and_a_started_run_needs_resume(tmp_path):
    out = tmp_path / "out"
    dry_run(SMOKE, out, "--arm", "real")
    job = out / "real" / "seed-0" / "verl"
    (job / "checkpoints" / "global_step_1").mkdir(parents=True)  # what verl leaves after a step
    train = (job / "train.parquet").stat().st_mtime_ns
    result = runner.invoke(app, ["train", str(SMOKE), "--dry-run", "--out", str(out), "--arm", "real", "--no-resume"])
    assert result.exit_code == 2 and "already holds a verl run" in result.output and "--resume" in result.output
    dry_run(SMOKE, out, "--arm", "real", "--resume")
    assert "trainer.resume_mode=auto" in (job / "overrides.txt").read_text().splitlines()
    assert (job / "train.parquet").stat().st_mtime_ns == train  # the datasets are kept


def test_run_local_tees_output_and_reports_failure(tmp_path):
    log = tmp_path / "train.log"
    ok = [sys.executable, "-c", "print('step 1'); print('step 2')"]
    launch.run_local(ok, log)
    assert log.read_text().splitlines() == ["step 1", "step 2"]
    bad = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    with pytest.raises(SimrlError, match=f"exited with code 3; its output is in {log}") as err:
        launch.run_local(bad, log)
    assert err.value.exit_code == 1 and log.read_text().splitlines()[-1] == "boom"


def test_user_errors(tmp_path, monkeypatch):
    quick = ROOT / "recipes" / "quickstart.yaml"
    result = runner.invoke(app, ["train", str(quick), "--ray-address", "http://127.0.0.1:1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--ray-address is for verl recipes" in result.output
    monkeypatch.setitem(sys.modules, "verl", None)  # as if verl were not installed
    result = runner.invoke(app, ["train", str(SMOKE), "--arm", "real", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "pip install 'simrl[verl]'" in result.output and "simrl[gpu]" in result.output
    monkeypatch.delitem(sys.modules, "verl")
    if not __import__("torch").cuda.is_available():
        result = runner.invoke(app, ["train", str(SMOKE), "--arm", "real", "--out", str(tmp_path / "b")])
        assert result.exit_code == 2 and "GPUs only" in result.output
        assert "--dry-run" in result.output and "--ray-address" in result.output
    result = runner.invoke(app, ["train", str(SMOKE), "--arm", "real", "--out", str(tmp_path / "c"),
                                 "--ray-address", "http://127.0.0.1:9"])  # nothing listens there
    assert result.exit_code == 2 and "cannot submit to the Ray cluster at http://127.0.0.1:9" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_HEAD = """
import sys, ray
ray.init(num_cpus=1, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=int(sys.argv[1]),
         _temp_dir=sys.argv[2])
print("READY", flush=True)
sys.stdin.read()  # until the test closes stdin
ray.shutdown()
"""


@pytest.fixture
def ray_head(monkeypatch):
    """A real local Ray head with its dashboard (job API) on 127.0.0.1, stopped after the test."""
    pytest.importorskip("ray.job_submission", reason="the job is submitted to a real local Ray head")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no token file for a throwaway local cluster
    port, temp = _free_port(), tempfile.mkdtemp(prefix="ray")
    proc = subprocess.Popen([sys.executable, "-c", _HEAD, str(port), temp], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
                            cwd=temp)  # not the repository: jobs must find simrl through py_modules
    try:
        line = proc.stdout.readline()
        if "READY" not in line:
            pytest.fail(f"the Ray head did not start: {line!r}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _wait(client, job_id: str, timeout: float = 90):
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return status
        time.sleep(0.5)
    return JobStatus.RUNNING


def test_ray_submission(ray_head, tmp_path):
    """A real submission to a local head: a trivial entrypoint with the job's runtime env imports the
    simrl shipped as py_modules; then `simrl train --ray-address` submits the verl entrypoint."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(ray_head)
    probe = "python -c 'import os, simrl; print(\"simrl from\", simrl.__file__, os.environ[\"PYTHONUNBUFFERED\"])'"
    job_id = launch.submit_ray(probe, ray_head, launch.ray_runtime_env(), {"simrl_test": "probe"})
    assert _wait(client, job_id) == JobStatus.SUCCEEDED, client.get_job_logs(job_id)
    logs = client.get_job_logs(job_id)
    assert "simrl from" in logs and "_ray_pkg_" in logs and logs.strip().endswith("1")  # the shipped package

    out = tmp_path / "out"
    result = runner.invoke(app, ["train", str(SMOKE), "--arm", "real", "--out", str(out), "--ray-address", ray_head])
    assert result.exit_code == 0, result.output
    record = yaml.safe_load((out / "real" / "seed-0" / "verl" / "ray_job.json").read_text())
    info = client.get_job_info(record["job_id"])
    client.stop_job(record["job_id"])  # no GPU here: do not let verl start
    assert record["job_id"] in result.output and f"ray job logs --address {ray_head} --follow" in result.output
    assert info.entrypoint.startswith("python -m verl.trainer.main_ppo ")
    assert shlex.split(info.entrypoint)[3:] == (out / "real" / "seed-0" / "verl" / "overrides.txt").read_text().splitlines()
    assert info.metadata["simrl_arm"] == "real" and info.runtime_env["py_modules"]
    _wait(client, record["job_id"], timeout=30)
