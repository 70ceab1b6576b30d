"""The report of a ``simrl train`` folder (``simrl report OUT``): no baselines, the runs' own evaluations.

``simrl ablate`` writes ``report.json`` after training every arm x seed and evaluating the baselines.
``simrl train RECIPE --out OUT`` leaves run folders ``OUT/<arm>/seed-<S>/`` (each with ``recipe.yaml``,
``metrics.jsonl`` and, when it evaluated, ``eval/``) and no report; :func:`report_train_folder` builds
one from them with :func:`simrl.experiment.report.build_report`, the comparisons and arm descriptions an
ablation of the same recipe would use (:mod:`simrl.experiment.ablate`), writes ``OUT/report.json``,
``report.md`` and the plots. Without baselines, a primary comparison against one (``b: untrained``) says
so in the report instead of a test, and so does a positive control (its baseline is not evaluated). A run without an evaluation (unfinished, or ``--no-evaluate``) is
listed as failed with the reason. A single run folder is a train folder of one run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.experiment import runs


def is_run(folder: Path) -> bool:
    """Whether ``folder`` is a run folder of ``simrl train`` (``.../<arm>/seed-<S>`` with its ``recipe.yaml``)."""
    return runs.run_seed(folder) is not None and (folder / "recipe.yaml").is_file()


def train_runs(folder: str | Path) -> list[Path]:
    """The run folders of a ``simrl train`` output folder (``<arm>/seed-<S>``), sorted; ``[folder]`` for a run
    folder itself; empty for anything else (an ablation folder has its ``recipe.yaml`` at the top)."""
    root = Path(folder)
    if is_run(root):
        return [root]
    if (root / "recipe.yaml").is_file():
        return []
    return sorted((p for p in root.glob("*/seed-*") if is_run(p)), key=lambda p: (p.parent.name, runs.run_seed(p)))


def report_train_folder(folder: str | Path) -> list[Path]:
    """Build and write the report of a ``simrl train`` folder (see the module docstring); returns the files.

    Raises:
        SimrlError: no run folders; runs of different recipes (their ``recipe.yaml`` differ beyond ``logging``);
            a run whose ``metrics.jsonl`` logs a step twice is reported as failed, not raised.
    """
    from simrl.evaluation.results import load_run_eval
    from simrl.experiment import ablate, locks
    from simrl.experiment.comparisons import comparisons, primary
    from simrl.experiment.recipe import load_recipe
    from simrl.experiment.report import build_report, read_met_in_training, write_report

    root = Path(folder)
    found = train_runs(root)
    if not found:
        raise SimrlError(f"{root}: no report.json and no runs of `simrl train` (<arm>/seed-<S>/recipe.yaml); give an "
                         "ablation folder (simrl ablate --out) or a train folder (simrl train --out)")
    recipe = load_recipe(found[0] / "recipe.yaml")
    design = _design(found[0])
    arms: dict[str, dict[int, Any]] = {}
    failed: dict[str, dict[int, str]] = {}
    run_dirs: dict[str, dict[int, str]] = {}
    for run in found:
        arm, seed = run.parent.name, runs.run_seed(run)
        if _design(run) != design:
            raise SimrlError(f"{run} was trained with another recipe than {found[0]} (their recipe.yaml differ); "
                             "report each train folder of one recipe")
        run_dirs.setdefault(arm, {})[seed] = str(run.relative_to(root)) if run != root else "."
        if dup := locks.duplicated_steps(runs.RunFiles(run).metrics):
            failed.setdefault(arm, {})[seed] = f"metrics.jsonl logs step(s) {dup[:5]} more than once"
        elif (ev := load_run_eval(run)) is not None:
            arms.setdefault(arm, {})[seed] = ev
        else:
            failed.setdefault(arm, {})[seed] = ("no held-out evaluation in RUN/eval (the run did not finish, or "
                                                "trained with --no-evaluate)")
    order = {a: i for i, a in enumerate(recipe.all_arms())}
    arms = {a: dict(sorted(arms[a].items())) for a in sorted(arms, key=lambda a: order.get(a, len(order)))}
    any_eval = next((e for per in arms.values() for e in per.values()), None)
    ev = recipe.evaluation
    evaluation = {"env": recipe.env.id, "real options": recipe.real.make_options() or "defaults", "split": ev.split,
                  "held-out worlds": recipe.world.eval_worlds or "none", "tasks": any_eval.tasks if any_eval else 0,
                  "trials": ev.trials, "greedy": ev.greedy, "max_turns": recipe.budget.max_turns,
                  "seeds": sorted({s for per in run_dirs.values() for s in per}), "source": "simrl train (no baselines)"}
    report = build_report(arms, {}, comparisons=comparisons(recipe, []), primary=primary(recipe, []),
                          failed=failed, run_dirs=run_dirs, evaluation=evaluation, recipe=recipe.name,
                          environments=ablate.environments(recipe), positive=recipe.positive_control,
                          met=read_met_in_training(root, run_dirs))
    return write_report(report, root)


def _design(run: Path) -> object:
    """A run's recipe without its ``logging`` block: what makes two runs the same experiment."""
    import yaml

    data = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k != "logging"} if isinstance(data, dict) else data
