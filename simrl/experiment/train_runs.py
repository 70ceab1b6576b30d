"""Training a recipe's arm x seed runs with its trainer, as ``simrl train`` does (the command's library side).

:func:`train_runs` trains runs one after another with the recipe's ``trainer.kind`` (its ``train`` entry point:
embedded, trl), :func:`launch_runs` writes and runs or submits the job of a trainer that launches one (verl),
:func:`summary_table` lays the runs' summaries out; the command adds the progress bar and the printing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from simrl.envs.registry import load_entry
from simrl.errors import SimrlError
from simrl.experiment import runs
from simrl.experiment.recipe import Recipe
from simrl.experiment.recipe_training import TRAINERS

Progress = Callable[[int, int, str], None]
"""``(steps done, steps in all, message)``: a run's progress report."""


def check_ray_address(recipe: Recipe, ray_address: str | None, source: Path | str) -> None:
    """Refuse ``--ray-address`` for a trainer that launches no job (only verl's does).

    Raises:
        SimrlError: one line naming the trainers that take it and ``source``'s ``trainer.kind``.
    """
    if ray_address is not None and TRAINERS[recipe.trainer.kind].launch is None:
        launchers = [k for k, t in TRAINERS.items() if t.launch is not None]
        raise SimrlError(f"--ray-address is for {' or '.join(launchers)} recipes; {source} uses trainer.kind "
                         f"{recipe.trainer.kind!r}")


def launch_runs(recipe: Recipe, arms: list[str], seeds: list[int], out: Path, **options: Any) -> None:
    """Write (and run or submit, unless ``dry_run``) the job of every arm x seed for a launching trainer (verl):
    its ``launch`` entry point with ``options`` (``dry_run``, ``ray_address``, ``resume``, ``console``,
    ``run_eval``), each run in ``OUT/<arm>/seed-<seed>``, worlds in ``OUT/worlds``."""
    launch = load_entry(TRAINERS[recipe.trainer.kind].launch or "")
    for name in arms:
        for seed in seeds:
            launch(recipe, name, seed, runs.run_dir(out, name, seed), worlds=runs.worlds_dir(out), **options)


def train_runs(recipe: Recipe, arms: list[str], seeds: list[int], out: Path, *, resume: bool, run_eval: bool,
               progress: Callable[[str, int], Progress] | None = None) -> list[Any]:
    """Train every arm x seed run here, one after another, with the recipe's trainer (its ``train`` entry point).

    Args:
        recipe, arms, seeds: the runs (arm names of the recipe, training seeds).
        out: the output folder: each run in ``OUT/<arm>/seed-<seed>``, worlds in ``OUT/worlds``.
        resume: continue started runs from their newest checkpoint.
        run_eval: evaluate each trained policy on held-out real tasks.
        progress: ``(arm, seed) -> report`` called before each run; its report gets the run's progress.

    Returns:
        The runs' summaries, in order.
    """
    entry = TRAINERS[recipe.trainer.kind].train
    assert entry is not None, "a launching trainer's runs go through launch_runs"
    trainer = load_entry(entry)
    summaries = []
    for name in arms:
        for seed in seeds:
            report = progress(name, seed) if progress is not None else None
            summaries.append(trainer(recipe, name, seed, runs.run_dir(out, name, seed), resume=resume,
                                     progress=report, worlds=runs.worlds_dir(out), run_eval=run_eval))
    return summaries


def summary_table(recipe: Recipe, summaries: list[Any], out: Path) -> Any:
    """The runs' summaries as a rich table: arm, seed, steps, first and final reward, final success, environment
    failures, held-out success per evaluation set, wall time."""
    from rich.table import Table

    table = Table(title=f"{recipe.name}: {len(summaries)} run(s) -> {out}")
    for col in ("arm", "seed", "steps", "first reward", "final reward", "final success", "env failures",
                "eval success", "time"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for s in summaries:
        ev = s.evaluation or {}
        success = "  ".join(f"{k} {v.get('success', 0):.0%}" for k, v in ev.items()) or "-"
        table.add_row(s.arm, str(s.seed), str(s.steps), f"{s.first_reward:.3f}", f"{s.final_reward:.3f}",
                      f"{s.final_success:.0%}", str(s.env_failures), success, f"{s.wall_s:.0f} s")
    return table
