"""What the embedded trainer's policy starts from and what it trains on (:mod:`simrl.trainers.embedded`, steps 3-4).

* :func:`warm_start`: behaviour cloning on scripted-expert demonstrations collected in the REAL environment,
  only from episodes that met no edge case: the tools, never the skills an ablation compares;
* :func:`training_pool`: the list each GRPO step draws its tasks from (``budget.task_weights``);
* :func:`stratified`: taking items in turn from each group (the demonstrations' templates).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simrl.experiment import runs
from simrl.experiment.recipe import Recipe
from simrl.rollout import rollout


async def expert_episodes(recipe: Recipe, world: Path, tasks: list, seed: int) -> list:
    """One scripted-expert episode per train task in the REAL environment, at the warm start's episode seeds
    (``seed * 1_000_003 + 999_999``): what :func:`warm_start` picks its demonstrations from and
    :func:`training_pool` reads task properties off. Returns the trajectories (one per task, in task order)."""
    from simrl.policies import make_policy

    expert = make_policy("expert", recipe.env.id, world, tasks)
    return await rollout(runs.real_env_factory(recipe, world), expert, tasks, max_turns=recipe.budget.max_turns,
                         concurrency=recipe.trainer.concurrency, seed=seed * 1_000_003 + 999_999)


class ExpertEpisodes:
    """:func:`expert_episodes` of one run, collected on first use and then shared, so that the warm start and the
    task pool read the same episodes and the expert runs once (not at all when neither needs it)."""

    def __init__(self, recipe: Recipe, world: Path, tasks: list, seed: int) -> None:
        self._args = (recipe, world, tasks, seed)
        self._episodes: list | None = None

    async def get(self) -> list:
        """The episodes (one per task, in task order)."""
        if self._episodes is None:
            self._episodes = await expert_episodes(*self._args)
        return self._episodes


async def warm_start(recipe: Recipe, policy: Any, world: Path, tasks: list, seed: int,
                     expert: ExpertEpisodes | None = None) -> dict[str, float] | None:
    """Behaviour cloning on ``recipe.warm_start.demos`` scripted-expert episodes in the REAL environment.

    The expert runs once on every train task; only successful episodes that met no edge case
    (:func:`simrl.evaluation.edge_cases.edge_cases`: no next page, no fault) may be demonstrations, chosen in turn
    from each task template (a seeded shuffle within each), so the warm start teaches the tools but never
    paging or recovery. ``expert``: the run's shared :class:`ExpertEpisodes` (a new one when None). Returns
    behaviour_cloning's metrics plus what the warm start saw (``demos``, ``expert_episodes``, ``clean_episodes``,
    ``demo_turns``, ``demos/<template>``), or None without one.
    """
    from simrl.evaluation.edge_cases import edge_cases
    from simrl.policies.scorer import behaviour_cloning

    ws = recipe.warm_start
    if ws is None or ws.demos == 0:
        return None
    trajs = await (expert or ExpertEpisodes(recipe, world, tasks, seed)).get()
    template = {t.task_id: t.template for t in tasks}
    clean = [t for t in trajs if t.status == "success" and not edge_cases(t)]
    demos = stratified(clean, lambda t: template[t.task_id], ws.demos, random.Random(f"simrl-warm-start-{seed}"))
    seen = {"expert_episodes": float(len(trajs)), "clean_episodes": float(len(clean)), "demos": float(len(demos)),
            "demo_turns": float(sum(len(t.turns) for t in demos))}
    seen |= {f"demos/{k}": float(v) for k, v in sorted(Counter(template[t.task_id] for t in demos).items())}
    if not demos:
        return seen
    views = {t.task_id: t.policy_view() for t in tasks}
    stats = behaviour_cloning(policy, demos, views, epochs=ws.epochs, lr=ws.lr, seed=seed)
    return {**{k: float(v) for k, v in stats.items()}, **seen}


async def training_pool(recipe: Recipe, world: Path, tasks: list, seed: int, expert: ExpertEpisodes | None = None
                        ) -> tuple[list, dict[str, float]]:
    """The list each step draws its ``budget.batch`` tasks from, and what it holds (``pool``, ``pool/<property>``).

    Without ``budget.task_weights``, ``tasks`` itself. With them, each task appears ``prod(weight)`` times over the
    properties it has (:data:`simrl.evaluation.results.TASK_SUBSETS`), read off one scripted-expert episode per
    task in the REAL environment (:func:`simrl.evaluation.eval_set.properties`: e.g. ``multi_page`` when the expert
    followed a continuation), at the warm start's episode seeds: properties of the task fixed before training,
    the same for every arm, never what the policy met. So a skill that few train tasks need (paging) gets more
    of the training signal without touching the policy, its candidates or its warm start. ``expert``: the run's
    shared :class:`ExpertEpisodes` (a new one when None).
    """
    weights = recipe.budget.task_weights
    if not weights:
        return tasks, {}
    from simrl.evaluation.eval_set import properties
    from simrl.evaluation.results import SUBSETS

    trajs = await (expert or ExpertEpisodes(recipe, world, tasks, seed)).get()
    by_id = {t.task_id: t for t in trajs}
    pool: list = []
    counts = dict.fromkeys(weights, 0)
    for task in tasks:
        props = properties(task, [by_id[task.task_id]])
        named = [name for name in weights if SUBSETS[name](props)]
        for name in named:
            counts[name] += 1
        pool += [task] * math.prod(weights[name] for name in named)
    return pool, {"pool": float(len(pool)), **{f"pool/{k}": float(v) for k, v in counts.items()}}


def stratified(items: list, key: Callable[[Any], str], n: int, rng: random.Random) -> list:
    """``n`` of ``items`` taken in turn from each group of ``key`` (groups sorted, each shuffled by ``rng``).

    >>> sorted(x % 2 for x in stratified([1, 3, 5, 7, 2, 4], lambda x: str(x % 2), 4, random.Random(0)))
    [0, 0, 1, 1]
    """
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    for name in sorted(groups):
        rng.shuffle(groups[name])
    order = [g for row in itertools.zip_longest(*(groups[k] for k in sorted(groups))) for g in row if g is not None]
    return order[:n]
