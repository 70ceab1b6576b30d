"""Launch one verl run (recipe arm x seed): write its job folder, then run it here or submit it to Ray.

``simrl train RECIPE`` calls :func:`train_verl` for each arm x seed of a ``trainer.kind: verl`` recipe.
The job folder ``OUT/<arm>/seed-<seed>/verl/`` (:class:`~simrl.trainers.verl.config.VerlFiles`) holds::

    train.parquet, val.parquet   the training world's tasks (simrl.trainers.verl.data)
    tools-<arm>.yaml             the arm's verl tool config (simrl.trainers.verl.tools): the only per-arm file
    recipe.yaml                  the resolved recipe
    overrides.txt                the Hydra overrides, one per line (simrl.trainers.verl.config)
    command.sh                   the exact command, shell-quoted: ``bash command.sh`` runs the job as is
    train.log                    a local run's output;  ray_job.json: a submitted job's id and address
    checkpoints/, rollouts/, hydra/   verl's checkpoints, rollout dumps and Hydra folder

Three ways on: ``--dry-run`` stops after writing (and printing) the command; a local run starts it
as a subprocess here (one node, GPUs needed), its output shown and written to ``train.log``;
``--ray-address`` submits the same entrypoint to a Ray cluster the way ``ray job submit`` does
(Ray's ``JobSubmissionClient``), with ``simrl`` shipped as a ``py_modules`` package so every worker
imports this very version. The job folder must then be readable at the same path on the cluster's
nodes (a shared file system), since the overrides and tool config name absolute paths.
``--resume`` sets verl's own ``trainer.resume_mode=auto`` on the same folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.experiment.recipe import Recipe, recipe_yaml
from simrl.trainers.verl.config import ENTRYPOINT, VerlFiles, check_shape, job_env, overrides

_INSTALL = ("install the verl extras: pip install 'simrl[verl]' (CPU: write and submit jobs) or "
            "pip install 'simrl[gpu]' (GPU nodes: torch 2.11 + vLLM 0.24, as verl 0.9.1 pins)")


@dataclass(frozen=True)
class VerlJob:
    """A written verl job: its files, its Hydra overrides and the local command (argv)."""

    files: VerlFiles
    overrides: list[str]
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # for verl's trackers (simrl.trainers.verl.config.job_env)

    def shell(self) -> str:
        """The local command as one shell line (each argument quoted where needed)."""
        return shlex.join(self.argv)


def require(module: str, what: str) -> None:
    """Raise a :class:`SimrlError` naming the extras to install when ``module`` cannot be imported."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise SimrlError(f"{what} needs the Python package {module!r}, which is not installed; {_INSTALL}")


def _model_path(model: str) -> str:
    """A local model folder made absolute (``./x``, ``../x``, ``/x``, ``~/x``); a hub id as it is."""
    if model.startswith(("/", "./", "../", "~")):
        return str(Path(model).expanduser().resolve())
    return model


def prepare_job(recipe: Recipe, arm: str, seed: int, run_dir: Path, *, worlds: Path,
                resume: bool = False) -> VerlJob:
    """Write the job folder of ``arm`` x ``seed`` under ``run_dir/verl`` (see the module docstring).

    Datasets are reused on ``resume`` (verl's checkpointed dataloader expects the same rows), written
    otherwise. A non-local model path is left for verl to download on the nodes.

    Raises:
        SpecError: unknown arm. SimrlError: ``run_dir`` already holds verl checkpoints and ``resume``
            is False; the world has no tasks; the batch does not fit the cluster (see config.py).
    """
    from simrl.experiment import runs
    from simrl.trainers.verl.data import write_datasets
    from simrl.trainers.verl.tools import write_tool_config

    recipe.arm(arm)
    check_shape(recipe)  # before any world or dataset is made
    files = VerlFiles(Path(run_dir).resolve() / "verl", arm)
    if not resume and any(files.checkpoints.glob("global_step_*")):
        raise SimrlError(f"{files.checkpoints} already holds a verl run; pass --resume to continue it "
                         "(verl's resume_mode=auto) or choose another --out")
    recipe = recipe.model_copy(update={"policy": recipe.policy.model_copy(
        update={"model": _model_path(recipe.policy.model or "")})})
    world = runs.training_world(recipe, Path(worlds).resolve())
    files.root.mkdir(parents=True, exist_ok=True)
    runs.write_atomic(files.recipe, recipe_yaml(recipe))
    if not (resume and files.train.is_file() and files.val.is_file()):
        write_datasets(recipe, world, files.root, seed=seed)
    written = write_tool_config(recipe, arm, world, files.root, seed=seed)
    if written.resolve() != files.tool_config:
        raise SimrlError(f"the tool config was written to {written}, not {files.tool_config}")  # a bug
    _check_rows(files, recipe.budget.batch)
    args = overrides(recipe, arm, files, seed=seed, resume=resume)
    job = VerlJob(files, args, [sys.executable, *ENTRYPOINT, *args], job_env(recipe, arm, seed, files))
    runs.write_atomic(files.overrides, "".join(f"{a}\n" for a in args))
    runs.write_atomic(files.command, _script(recipe, arm, seed, job))
    files.command.chmod(0o755)
    return job


def _check_rows(files: VerlFiles, batch: int) -> None:
    import pyarrow.parquet as pq

    rows = pq.read_metadata(files.train).num_rows
    if rows < batch:
        raise SimrlError(f"{files.train} has {rows} train tasks, fewer than budget.batch {batch} per step; "
                         "use a larger world (world.entities) or a smaller budget.batch")


def _script(recipe: Recipe, arm: str, seed: int, job: VerlJob) -> str:
    body = " \\\n    ".join([shlex.join(job.argv[:3]), *(shlex.quote(a) for a in job.argv[3:])])
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in job.env.items())  # the trackers' group, folders
    return (f"#!/usr/bin/env bash\n# verl job of recipe {recipe.name!r}, arm {arm!r}, seed {seed} (written by "
            f"`simrl train`).\n# Runs from any folder; output goes to {job.files.root}. Arguments are appended:\n"
            "# more overrides (last wins), or `--cfg job` to print the composed config and stop.\n"
            f"set -euo pipefail\nexport PYTHONUNBUFFERED=1\n{exports}exec {body} \\\n    \"$@\"\n")


def run_local(argv: list[str], log: Path, console: Any = None, env: dict[str, str] | None = None) -> None:
    """Run ``argv`` here, each output line shown on ``console`` (stderr if None) and appended to ``log``.

    Raises:
        SimrlError: the command exits non-zero (the message names the exit code and ``log``).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out, subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            out.flush()
            if console is not None:
                console.out(line.rstrip("\n"), highlight=False)
            else:
                sys.stderr.write(line)
        code = proc.wait()
    if code != 0:
        raise SimrlError(f"verl exited with code {code}; its output is in {log}", exit_code=1)


def ray_runtime_env() -> dict[str, Any]:
    """The job's runtime env: ``simrl`` as a ``py_modules`` package (this version, on every worker),
    unbuffered output, and ``OPENAI_API_KEY`` when set here (the openai world-model backend's key)."""
    import simrl

    env_vars = {"PYTHONUNBUFFERED": "1"}
    if os.environ.get("OPENAI_API_KEY"):
        env_vars["OPENAI_API_KEY"] = os.environ["OPENAI_API_KEY"]
    return {"py_modules": [str(Path(simrl.__file__).resolve().parent)], "env_vars": env_vars}


def ray_entrypoint(job: VerlJob) -> str:
    """The job's entrypoint on the cluster: the cluster's ``python`` running verl with the same overrides."""
    return shlex.join(["python", *ENTRYPOINT, *job.overrides])


def submit_ray(entrypoint: str, address: str, runtime_env: dict[str, Any],
               metadata: dict[str, str] | None = None) -> str:
    """Submit ``entrypoint`` to the Ray cluster at ``address`` (its dashboard, e.g. ``http://HEAD:8265``),
    as ``ray job submit`` does; returns the job id.

    Raises:
        SimrlError: Ray's job client is not installed, or the cluster cannot be reached or refuses the job.
    """
    require("ray", "--ray-address")
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as err:  # ray without its [default] extras
        raise SimrlError(f"Ray's job client cannot be imported ({err}); {_INSTALL}") from None
    try:
        client = JobSubmissionClient(address)
        return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata=metadata or {})
    except Exception as err:  # connection refused, version mismatch, token auth, bad runtime env
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SimrlError(f"cannot submit to the Ray cluster at {address}: {first} (is `ray start --head` "
                         "running there with its dashboard? with Ray token auth, export RAY_AUTH_MODE=token "
                         "and the cluster's token first)") from None


def train_verl(recipe: Recipe, arm: str, seed: int, run_dir: Path, *, worlds: Path, dry_run: bool = False,
               ray_address: str | None = None, resume: bool = False, console: Any = None,
               run_eval: bool = True) -> VerlJob:
    """Write the verl job of ``arm`` x ``seed`` and print its command; then run it here, or submit it
    to ``ray_address``, unless ``dry_run``. After a local run (``run_eval``), merge its newest
    checkpoint into ``run_dir/final`` and evaluate it on held-out real tasks
    (:func:`simrl.trainers.verl.evaluate.evaluate_verl_run`); a submitted job is evaluated later with
    ``simrl eval --checkpoint`` on the merged model.

    Returns:
        The job (files, overrides, local argv).

    Raises:
        SimrlError: as :func:`prepare_job`; verl missing (a local run) or no GPU here (suggesting
            --dry-run or --ray-address); a local model folder that does not exist; verl failed (the
            message names train.log); the submission failed; another process writes ``run_dir``.
    """
    from rich.console import Console

    from simrl.experiment.locks import lock_folder

    console = console or Console(stderr=True)
    with lock_folder(run_dir, "run folder"):  # one writer per run folder (simrl.experiment.locks)
        return _train_verl(recipe, arm, seed, run_dir, worlds=worlds, dry_run=dry_run, ray_address=ray_address,
                           resume=resume, console=console, run_eval=run_eval)


def _train_verl(recipe: Recipe, arm: str, seed: int, run_dir: Path, *, worlds: Path, dry_run: bool,
                ray_address: str | None, resume: bool, console: Any, run_eval: bool) -> VerlJob:
    job = prepare_job(recipe, arm, seed, run_dir, worlds=worlds, resume=resume)
    console.print(f"verl job {recipe.name} / {arm} / seed {seed}: {job.files.root}", markup=False, highlight=False, soft_wrap=True)
    sys.stdout.write(job.shell() + "\n")
    sys.stdout.flush()
    if dry_run:
        return job
    if ray_address is not None:
        runtime_env = ray_runtime_env()
        runtime_env["env_vars"].update(job.env)
        job_id = submit_ray(ray_entrypoint(job), ray_address, runtime_env,
                            {"simrl_recipe": recipe.name, "simrl_arm": arm, "simrl_seed": str(seed)})
        runs_file = job.files.root / "ray_job.json"
        runs_file.write_text(json.dumps({"address": ray_address, "job_id": job_id,
                                         "entrypoint": ray_entrypoint(job)}, indent=2) + "\n", encoding="utf-8")
        console.print(f"submitted Ray job {job_id}\n  follow: ray job logs --address {ray_address} --follow {job_id}"
                      f"\n  status: ray job status --address {ray_address} {job_id}"
                      f"\n  stop:   ray job stop --address {ray_address} {job_id}", markup=False, highlight=False, soft_wrap=True)
        return job
    require("verl", "a local verl run")
    _require_gpu()
    model = recipe.policy.model or ""
    if model.startswith(("/", "./", "../", "~")) and not Path(_model_path(model)).is_dir():
        raise SimrlError(f"policy.model {model} is not a folder here; make it first (e.g. `python -m "
                         f"simrl.testing.tiny_model {model}`) or name a Hugging Face model id")
    console.print(f"running verl here; output -> {job.files.log}", markup=False, highlight=False, soft_wrap=True)
    run_local(job.argv, job.files.log, console, env=job.env)
    if run_eval:
        from simrl.trainers.verl.evaluate import evaluate_verl_run

        console.print("merging the newest checkpoint and evaluating on held-out real tasks", markup=False,
                      highlight=False)
        results = evaluate_verl_run(recipe, run_dir, job.files, worlds=worlds)
        console.print("held-out success: " + "  ".join(f"{k} {v.get('success', 0):.0%}" for k, v in results.items()),
                      markup=False, highlight=False)
    return job


def _require_gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        raise SimrlError("verl trains on GPUs only (its rollout is vLLM/SGLang) and none is visible here; use "
                         "--dry-run to write and inspect the job, or --ray-address http://HEAD:8265 to submit it "
                         "to a GPU cluster")
