"""Run folders: layout, worlds and environments of a run, checkpoints and resume.

Layout of ``simrl train RECIPE --out OUT`` (one folder per arm x seed, worlds shared)::

    OUT/worlds/<spec>-seed<S>-<hash>/     generated worlds (training world, held-out worlds), reused
    OUT/<arm>/seed-<seed>/                a run (:class:`RunFiles`):
        recipe.yaml                       the resolved recipe (every field, absolute paths)
        metrics.jsonl                     one line per GRPO step (see simrl.trainers.lifecycle.StepMetrics)
        trajectories.jsonl                a sample of each step's episodes (``info.train_step`` = step)
        warmstart.pt                      the policy after behaviour cloning (if the recipe has a warm start)
        checkpoints/step-N.pt, latest     policy + optimizer + RNG states after N steps; ``latest`` names one
                                          (only it keeps the optimizer's moments: save_checkpoint)
        final.pt                          the trained policy (ScorerPolicy.save)
        summary.json                      the run's RunSummary
        .lock                             the writer's OS lock and pid (simrl.experiment.locks)
        tmp/                              the writer's temporary folders, emptied by the next writer

Every file that must survive a kill is written atomically (a temporary file in the same folder, then
``os.replace``); the JSONL logs are appended line by line and flushed, and :func:`truncate_jsonl` cuts
them back to the checkpointed step on resume, so a step is never logged twice or lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.experiment.recipe import Arm, Recipe


def run_dir(out: str | Path, arm: str, seed: int) -> Path:
    """The folder of one arm x seed run under ``out`` (``out/<arm>/seed-<seed>``)."""
    return Path(out) / arm / f"seed-{seed}"


def run_seed(folder: str | Path) -> int | None:
    """The seed of a run folder named by :func:`run_dir` (``.../seed-<seed>``), or None for another name.

    >>> run_seed("runs/quickstart/real/seed-8"), run_seed("runs/quickstart/real")
    (8, None)
    """
    match = re.fullmatch(r"seed-(\d+)", Path(folder).name)
    return int(match.group(1)) if match else None


def worlds_dir(out: str | Path) -> Path:
    """The folder of the worlds a recipe's runs share (``out/worlds``)."""
    return Path(out) / "worlds"


@dataclass(frozen=True)
class RunFiles:
    """The paths of one run folder (see the module docstring)."""

    root: Path

    @property
    def recipe(self) -> Path:
        """The resolved recipe (every field, absolute paths)."""
        return self.root / "recipe.yaml"

    @property
    def metrics(self) -> Path:
        """One JSON line per GRPO step (:class:`~simrl.trainers.lifecycle.StepMetrics`)."""
        return self.root / "metrics.jsonl"

    @property
    def trajectories(self) -> Path:
        """A sample of each step's episodes, one JSON line each (``info.train_step`` = step)."""
        return self.root / "trajectories.jsonl"

    @property
    def checkpoints(self) -> Path:
        """The folder of ``step-N.pt`` checkpoints and the ``latest`` pointer."""
        return self.root / "checkpoints"

    @property
    def warmstart(self) -> Path:
        """The policy after behaviour cloning (only when the recipe has a warm start)."""
        return self.root / "warmstart.pt"

    @property
    def final(self) -> Path:
        """The trained policy (:meth:`~simrl.policies.scorer.ScorerPolicy.save`)."""
        return self.root / "final.pt"

    @property
    def summary(self) -> Path:
        """The run's :class:`~simrl.trainers.lifecycle.RunSummary` as JSON."""
        return self.root / "summary.json"

    def started(self) -> bool:
        """Whether a run already wrote something here (metrics, checkpoints or a summary)."""
        return self.metrics.exists() or self.summary.exists() or any(self.checkpoints.glob("step-*.pt"))


# -- worlds and environments ---------------------------------------------------------------------------

def _world_folder(spec_path: Path, seed: int, entities: int | None, worlds: Path) -> Path:
    """A world of ``spec_path`` + ``seed`` under ``worlds``: generated once, reused by every run (file lock)."""
    from simrl.world import generate_world, load_spec
    from simrl.world.io import spec_to_yaml

    spec = load_spec(spec_path)
    key = hashlib.sha256(f"{spec_to_yaml(spec)}\n{entities}".encode()).hexdigest()[:10]
    folder = worlds / f"{spec.name}-seed{seed}-{key}"
    worlds.mkdir(parents=True, exist_ok=True)
    with (worlds / f".{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel runs of one recipe generate each world once
        if not (folder / "manifest.json").is_file():
            generate_world(spec, seed, folder, entities=entities, force=folder.exists())
    return folder


def training_world(recipe: Recipe, worlds: str | Path) -> Path:
    """The training world: ``recipe.world.spec`` itself if it is a world folder, else generated under ``worlds``."""
    spec = Path(recipe.world.spec)
    if spec.is_dir():
        return spec
    return _world_folder(spec, recipe.world.seed, recipe.world.entities, Path(worlds))


def eval_worlds(recipe: Recipe, worlds: str | Path) -> list[Path]:
    """The held-out worlds (``recipe.world.eval_worlds`` seeds of the same spec), generated under ``worlds``.

    For a world folder, its own ``spec.yaml`` generates them.
    """
    spec = Path(recipe.world.spec)
    if spec.is_dir():
        spec = spec / "spec.yaml"
    return [_world_folder(spec, s, recipe.world.entities, Path(worlds)) for s in recipe.world.eval_worlds]


def world_tasks(recipe: Recipe, world: Path, split: str | None) -> list:
    """The tasks of ``world`` in ``split`` (None: every split) of the recipe's task types, in file order.

    Raises:
        SimrlError: there are none.
    """
    return env_tasks(recipe.env.id, world, split, recipe.env.types())


def env_tasks(env_id: str, world: Path | None, split: str | None, kinds: tuple[str, ...] | None = None) -> list:
    """The tasks environment ``env_id`` runs in ``world``: its own (``load_tasks``, e.g. bfcl's) or the world
    folder's, of ``split`` (None: every split) and of the task types ``kinds`` (None: every type it serves),
    in file order.

    Raises:
        SimrlError: there are none.
    """
    from simrl.envs.base import spec

    env_spec = spec(env_id)
    kinds = kinds or env_spec.task_types
    tasks = [t for t in env_spec.tasks(world, split) if not kinds or t.type in kinds]
    if not tasks:
        raise SimrlError(f"no {'/'.join(kinds) or ''} tasks in split {split or 'any'} of {world}; use a larger "
                         "world (world.entities) or another split")
    return tasks


def real_env_factory(recipe: Recipe, world: Path) -> Callable[[], Any]:
    """``make(recipe.env.id, world=world, **recipe.real options)``: the real environment (warm start, evaluation)."""
    from simrl.envs.base import make

    options = recipe.real.make_options()
    return lambda: make(recipe.env.id, world=world, **options)


def arm_env_factory(recipe: Recipe, arm: Arm, world: Path, *, progress: float = 0.0,
                    seed: int = 0) -> Callable[[], Any]:
    """The environment factory of ``arm`` at training ``progress`` (in [0, 1]): :func:`env_factory` with the
    recipe's environment and real options.

    Raises:
        SimrlError / SpecError: bad backend options or schedule (checked on a first environment).
    """
    return env_factory(recipe.env.id, arm, world, recipe.real.make_options(), progress=progress, seed=seed)


def env_factory(env_id: str, arm: Arm, world: Path | None, real_options: dict[str, Any] | None = None, *,
                progress: float = 0.0, seed: int = 0) -> Callable[[], Any]:
    """The factory of ``arm``'s environments of ``env_id`` at training ``progress`` (in [0, 1]).

    real: ``make(env_id, world=world, **real_options)``; world_model: ``make(env_id, world=W,
    world_model=backend, wm_*=...)``; with a schedule: wrapped by :func:`simrl.perturb.perturbed_factory`
    (the schedule's curriculum is read at ``progress``; ``seed`` seeds the draws).

    Raises:
        SimrlError / SpecError: bad backend options or schedule (checked on a first environment).
    """
    from simrl.envs.base import make
    from simrl.perturb import perturbed_factory

    if arm.environment == "real":
        options = dict(real_options or {})
    else:
        options = {"world_model": arm.world_model(), "wm_model": arm.model, "wm_base_url": arm.base_url,
                   "wm_temperature": arm.temperature, "wm_options": dict(arm.options) or None,
                   "wm_cache": arm.cache, "wm_max_tokens": arm.max_tokens, "wm_open_within": arm.open_within,
                   "max_parse_retries": arm.parse_retries}
    base = lambda: make(env_id, world=world, **options)  # noqa: E731
    return perturbed_factory(base, arm.schedule, progress=progress, mode=arm.mode, seed=seed)


# -- files written atomically ----------------------------------------------------------------------------

def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_torch(path: Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())


def load_torch(path: Path) -> Any:
    """``torch.load`` of a file this module wrote (tensors, numbers, strings, lists, tuples, dicts only).

    Raises:
        SimrlError: the file is damaged (truncated, or not a torch file), naming it.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - torch reports a bad file with many exception types
        reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise SimrlError(f"{path}: damaged checkpoint ({reason}); delete it (a resumed run then starts from "
                         "the previous one)") from None


# -- checkpoints and resume -------------------------------------------------------------------------------

_STEP = re.compile(r"^step-(\d+)\.pt$")


OPTIMIZER = "optimizer"
"""The checkpoint entry holding the optimizer's ``state_dict()`` (stored by :func:`save_checkpoint` as
described there; :func:`latest_checkpoint` gives it back as it was)."""


def save_checkpoint(files: RunFiles, step: int, state: dict[str, Any], keep: int | None = None) -> Path:
    """Write ``checkpoints/step-<step>.pt`` (``state`` plus ``step``) and point ``checkpoints/latest`` at it.

    Both writes are atomic, the pointer last: a kill at any moment leaves the previous checkpoint current.
    Then only the ``keep`` newest checkpoints are kept (None: all).

    Disk: the optimizer's moments are kept only where a resume needs them, in the latest checkpoint,
    compressed (:mod:`simrl.experiment.optim_state`); the checkpoint that was latest keeps its optimizer's
    settings only, so a resume from it (when the latest is damaged) restarts the moments. ``final.pt``
    has no optimizer at all.
    """
    pointer = files.checkpoints / "latest"
    previous = files.checkpoints / pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None
    path = files.checkpoints / f"step-{step}.pt"
    packed = {**state, "step": step}
    if isinstance(packed.get(OPTIMIZER), dict):
        from simrl.experiment.optim_state import pack, slim

        _SLIM[path] = slim(packed[OPTIMIZER])  # what _slim will write, known now (no decompression then)
        packed[OPTIMIZER] = pack(packed[OPTIMIZER])
    save_torch(path, packed)
    write_atomic(pointer, path.name + "\n")
    if keep is not None:
        found = sorted((int(m.group(1)), p) for p in files.checkpoints.glob("step-*.pt") if (m := _STEP.match(p.name)))
        for _, old in found[:-keep]:
            if old != path:
                old.unlink(missing_ok=True)
    if previous is not None and previous != path and previous.is_file():
        _slim(previous)
    return path


_SLIM: dict[Path, Any] = {}
"""The slim optimizer entry of each checkpoint this process wrote, until :func:`_slim` rewrites it (one entry a
run at a time): slimming then needs no decompression of the moments."""


def _slim(path: Path) -> None:
    """Rewrite a checkpoint without its optimizer's moments (:func:`simrl.experiment.optim_state.slim`);
    a damaged one is left as it is."""
    from simrl.experiment.optim_state import slim

    known = _SLIM.pop(path, _SLIM)
    try:
        state = load_torch(path)
        thin = slim(state.get(OPTIMIZER)) if known is _SLIM else known
    except Exception:  # noqa: BLE001 - damaged: latest_checkpoint skips it
        return
    if thin is not None:
        save_torch(path, {**state, OPTIMIZER: thin})


def latest_checkpoint(files: RunFiles) -> tuple[int, dict[str, Any]] | None:
    """``(step, state)`` of the newest readable checkpoint (``latest`` first, then the others newest
    first), or None when there is none; the optimizer state as it was given to :func:`save_checkpoint`."""
    candidates: list[Path] = []
    pointer = files.checkpoints / "latest"
    if pointer.is_file():
        candidates.append(files.checkpoints / pointer.read_text(encoding="utf-8").strip())
    found = [(int(m.group(1)), p) for p in files.checkpoints.glob("step-*.pt") if (m := _STEP.match(p.name))]
    candidates += [p for _, p in sorted(found, reverse=True)]
    for path in candidates:
        with contextlib.suppress(Exception):  # a damaged file (copied by hand, disk full): try the next
            state = load_torch(path)
            if OPTIMIZER in state:
                from simrl.experiment.optim_state import unpack

                state[OPTIMIZER] = unpack(state[OPTIMIZER])
            return int(state["step"]), state
    return None


def rewind_logs(files: RunFiles, step: int | None) -> None:
    """Cut ``metrics.jsonl`` and ``trajectories.jsonl`` back to training step ``step`` (a resume from
    that step's checkpoint), or delete both when ``step`` is None (a fresh start)."""
    if step is None:
        for path in (files.metrics, files.trajectories):
            path.unlink(missing_ok=True)
        return
    truncate_jsonl(files.metrics, lambda row: row.get("step", 0) <= step)
    truncate_jsonl(files.trajectories, lambda row: row.get("info", {}).get("train_step", 0) <= step)


def truncate_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> int:
    """Keep the lines of ``path`` for which ``keep(row)`` holds, dropping a torn last line; returns lines kept."""
    if not path.exists():
        return 0
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            row = json.loads(line)
            if keep(row):
                rows.append(line)
    write_atomic(path, "".join(f"{r}\n" for r in rows))
    return len(rows)
