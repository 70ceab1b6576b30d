"""A recipe's held-out evaluation: the evaluation sets of a run, its learning curve, runs and baselines evaluated.

Built on :mod:`simrl.evaluation` (which knows nothing of recipes): :func:`evaluation_sets` fixes the recipe's
evaluation sets (:func:`simrl.evaluation.eval_set.prepare`, cached under the worlds folder),
:func:`evaluate_heldout` evaluates a policy on them in the REAL environment (what every trainer runs at the end
of a run), :func:`curve_point` takes one point of a run's held-out learning curve, :func:`evaluate_run` a run's
checkpoint (loaded by its trainer kind's ``load_policy`` hook) and :func:`evaluate_baseline` a baseline
(:mod:`simrl.experiment.baselines`) the same way.
"""

from __future__ import annotations

from pathlib import Path

from simrl.evaluation.eval_set import Prepared
from simrl.evaluation.evaluate import EVAL_SEED, evaluate_policy
from simrl.evaluation.results import EvalResult, load_run_eval, merge_results, summarize
from simrl.experiment import runs
from simrl.experiment.recipe import Recipe
from simrl.rollout import Policy, rollout

CURVE = "curve.jsonl"
"""A run's held-out learning curve (``evaluation.every``): one :func:`curve_point` per line."""


def load_policy(recipe: Recipe, checkpoint: Path | None, seed: int) -> Policy:
    """The policy at ``checkpoint`` (a file or folder a run wrote), or with None the untrained policy a run of
    ``seed`` starts from, as the recipe's trainer kind loads it (its ``load_policy`` hook).

    Raises:
        SimrlError: the hook cannot load it (the message says what is missing).
    """
    from simrl.envs.registry import load_entry
    from simrl.experiment.recipe_training import TRAINERS

    return load_entry(TRAINERS[recipe.trainer.kind].load_policy)(recipe, checkpoint, seed=seed)


def _evaluate_into(recipe: Recipe, policy: Policy, folder: Path, worlds: Path) -> EvalResult:
    """Run the recipe's held-out evaluation (:func:`evaluate_heldout`) into ``folder/eval``."""
    evaluate_heldout(recipe, policy, runs.RunFiles(folder), runs.training_world(recipe, worlds), worlds)
    result = load_run_eval(folder)
    assert result is not None
    return result


def evaluate_run(run_dir: str | Path, recipe: Recipe, *, worlds: str | Path | None = None,
                 checkpoint: str | None = None, out: str | Path | None = None) -> EvalResult:
    """Evaluate a training run's final policy (greedy per ``recipe.evaluation``) on the recipe's held-out real tasks.

    Args:
        run_dir: ``OUT/<arm>/seed-<S>`` of ``simrl train`` (its seed is read from the folder name).
        recipe: the run's :class:`~simrl.experiment.recipe.Recipe`.
        worlds: the shared worlds folder (default ``OUT/worlds``, two levels up).
        checkpoint: the policy file (or model folder) inside ``run_dir`` (default: the trainer kind's ``final``,
            ``final.pt`` of the embedded trainer, ``final/`` of trl and verl).
        out: where ``eval/<label>/`` is written (default ``run_dir``: the run's own evaluation).

    Returns:
        The evaluation pooled over the training world's ``evaluation.split`` tasks and the held-out
        worlds (files under ``OUT/eval/<label>/``), with the episode seeds the run's own evaluation used.

    Raises:
        SimrlError: no such checkpoint, a folder name without ``seed-<S>``, or a checkpoint the trainer kind
            cannot load.
    """
    from simrl.errors import SimrlError
    from simrl.experiment.recipe_training import TRAINERS

    run = Path(run_dir)
    checkpoint = checkpoint or TRAINERS[recipe.trainer.kind].final
    seed = runs.run_seed(run)
    if seed is None or not (run / checkpoint).exists():
        raise SimrlError(f"{run} is not a finished run (need {checkpoint} in a seed-<S> folder of `simrl train`)")
    policy = load_policy(recipe, run / checkpoint, seed)  # the trainer kind's load_policy hook
    return _evaluate_into(recipe, policy, Path(out) if out is not None else run,
                          Path(worlds or run.parent.parent / "worlds"))


def evaluate_baseline(recipe: Recipe, name: str, seed: int, folder: str | Path, *, worlds: str | Path,
                      warmstart: str | Path | None = None) -> EvalResult:
    """Evaluate a baseline of ``seed`` like a run (same tasks, same episode seeds): writes ``folder/eval/``.

    The baselines are those of :data:`simrl.experiment.baselines.BASELINES`, their policies made through the
    recipe's trainer kind (:func:`load_policy`): ``untrained`` the policy a run of ``seed`` starts from,
    before any warm start; ``warmstart`` the behaviour-cloned policy ``warmstart`` (a run's ``warmstart.pt``);
    ``candidates`` a uniform random choice among the candidate actions of each turn.

    Raises:
        SimrlError: an unknown baseline name, or one that needs a run file without it.
    """
    from simrl.errors import SimrlError
    from simrl.experiment.baselines import BASELINES

    base = BASELINES.get(name)
    file = Path(warmstart) if warmstart is not None else None
    if base is None or (base.needs is not None and (file is None or not file.is_file())):
        need = [f"{n} with a run's {b.needs}" if b.needs else n for n, b in BASELINES.items()]
        raise SimrlError(f"baseline {name!r}: use {', '.join(need)}")
    policy = base.policy(lambda path, s: load_policy(recipe, path, s), seed, file if base.needs else None)
    return _evaluate_into(recipe, policy, Path(folder), Path(worlds))


def evaluation_sets(recipe: Recipe, world: Path, worlds: Path) -> list[tuple[str, Path, Prepared]]:
    """``(label, world, evaluation set)`` of each held-out evaluation of ``recipe`` (see :func:`evaluate_heldout`):
    ``<evaluation.split>`` of the training ``world``, then ``heldout-seed<S>`` of each held-out world, each fixed
    by :func:`simrl.evaluation.eval_set.prepare` (cached under ``worlds/eval-sets``).

    Raises:
        SimrlError: a set where the scripted expert solves no task within ``budget.max_turns``.
    """
    import hashlib
    import json

    from simrl.errors import SimrlError
    from simrl.evaluation.eval_set import prepare

    ev = recipe.evaluation
    targets = [(ev.split, world, ev.split)]
    targets += [(f"heldout-seed{s}", w, None) for s, w in zip(recipe.world.eval_worlds, runs.eval_worlds(recipe, worlds))]
    key = json.dumps([recipe.env.id, recipe.real.make_options(), ev.trials, ev.max_tasks, recipe.budget.max_turns,
                      EVAL_SEED], sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    out = []
    for label, w, split in targets:
        tasks = runs.world_tasks(recipe, w, split)[:ev.max_tasks]
        ready = prepare(tasks, runs.real_env_factory(recipe, w), env_id=recipe.env.id, world=w, trials=ev.trials,
                        max_turns=recipe.budget.max_turns, seed=EVAL_SEED, concurrency=recipe.trainer.concurrency,
                        cache=worlds / "eval-sets" / f"{w.name}-{label}-{digest}.json")
        if not ready.tasks:
            raise SimrlError(f"no {label} task is solvable by the scripted expert within budget.max_turns "
                             f"{recipe.budget.max_turns}; raise it")
        out.append((label, w, ready))
    return out


async def curve_point(recipe: Recipe, policy: Policy, sets: list[tuple[str, Path, Prepared]], step: int) -> dict:
    """One point of a run's held-out learning curve: ``policy`` (greedy) on the first trial of each evaluation set.

    The same tasks and episode seeds as trial 1 of the final evaluation (:func:`evaluate_heldout`), in the REAL
    environment, for every arm: curves of different arms are comparable, unlike their training rewards (each
    measured in its own training environment). Nothing is written here; the caller logs the point.

    Args:
        sets: :func:`evaluation_sets` of the run.
        step: the training step the point is taken after (0: before training).

    Returns:
        ``{"step", "episodes", "success", "subsets": {subset: success}}`` pooled over the sets.
    """
    greedy, policy.greedy = policy.greedy, True  # type: ignore[attr-defined]  # curve points are greedy
    try:
        results = []
        for label, w, ready in sets:
            trajs = await rollout(runs.real_env_factory(recipe, w), policy, ready.tasks,
                                  max_turns=recipe.budget.max_turns, concurrency=recipe.trainer.concurrency,
                                  seed=EVAL_SEED)
            results.append(summarize(trajs, ready.tasks, 1, label=label, properties=ready.properties))
    finally:
        policy.greedy = greedy  # type: ignore[attr-defined]
    pooled = merge_results(results, label="all")
    return {"step": step, "episodes": pooled.episodes, "success": pooled.metrics["success"],
            "subsets": {name: score.success for name, score in pooled.subsets.items()}}


def evaluate_heldout(recipe: Recipe, policy: Policy, files: runs.RunFiles, world: Path,
                     worlds: Path) -> dict[str, dict[str, float]]:
    """Evaluate ``policy`` in the REAL environment on held-out tasks; returns label -> metrics.

    Labels: ``<evaluation.split>`` (that split of the training world) and ``heldout-seed<S>`` (every task of
    each held-out world, ``world.eval_worlds``), at most ``evaluation.max_tasks`` each, ``evaluation.trials``
    episodes per task at episode seeds from :data:`simrl.evaluation.evaluate.EVAL_SEED` (not from the run's seed: every arm, seed
    and baseline meets the same episodes), written to ``eval/<label>/eval.json`` (+ ``eval_trajectories.jsonl``)
    by :func:`simrl.evaluation.evaluate.evaluate_policy`; ``all`` is their pool
    (:func:`simrl.evaluation.results.merge_results`, as :func:`simrl.evaluation.results.load_run_eval` reads it).
    The task sets are fixed first by :func:`evaluation_sets` (tasks the scripted expert cannot solve within
    ``budget.max_turns`` dropped; task properties), cached under ``worlds``.
    """
    ev = recipe.evaluation
    policy.greedy = ev.greedy
    results = {}
    for label, w, ready in evaluation_sets(recipe, world, worlds):
        results[label] = evaluate_policy(policy, runs.real_env_factory(recipe, w), ready.tasks, trials=ev.trials,
                                         max_turns=recipe.budget.max_turns, seed=EVAL_SEED,
                                         out=files.root / "eval" / label, concurrency=recipe.trainer.concurrency,
                                         label=label, properties=ready.properties, dropped=ready.dropped)
    pooled = merge_results(list(results.values()), label="all")
    return {"all": pooled.metrics} | {label: r.metrics for label, r in results.items()}
