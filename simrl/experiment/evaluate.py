"""Held-out evaluation on REAL tasks: success, pass@k / avg@k, WideSearch F1, and success by edge case.

:func:`evaluate_policy` runs ``trials`` episodes of a policy on every task (a fresh real environment
per episode, :func:`simrl.rollout.rollout`) and :func:`summarize` turns the trajectories into an
:class:`EvalResult`. Multi-trial numbers follow WideSearch's definition
(:func:`simrl.reward.widesearch.aggregate_trials`): per task the mean (avg@k) and the max (pass@k)
over its k trials, then the mean over tasks. Table tasks also get item and row F1 (from the final
step's ``info["metrics"]``, which the environment scores with WideSearch's metrics).

Subsets are defined BEFORE the run, from task properties that every arm shares
(:attr:`TaskResult.properties`: ``kind`` read / write, ``pages`` the gold answer needs, ``faults``
pre-drawn on the task's episode seeds; :mod:`simrl.experiment.eval_tasks` fixes them and drops the tasks
the scripted expert cannot solve within the turn limit): :data:`SUBSETS` is the one registry of
their names. Edge cases read off each trajectory's own text (:func:`edge_cases`) are kept as a
description of what each policy met; they differ by arm and are not for comparisons.
:func:`evaluate_run` / :func:`evaluate_baseline` evaluate a training run's checkpoint and the
baselines (:data:`BASELINES`) on a recipe's held-out tasks (:mod:`simrl.experiment.recipe`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from simrl.envs.base import Environment
from simrl.rollout import Policy, TrajectoryWriter, rollout
from simrl.types import Trajectory
from simrl.world.schema import Task

if TYPE_CHECKING:
    from simrl.experiment import runs
    from simrl.experiment.eval_tasks import Prepared
    from simrl.experiment.recipe import Recipe

EVAL_JSON = "eval.json"
EVAL_TRAJECTORIES = "eval_trajectories.jsonl"
NONE = "none"
EVAL_SEED = 777_777
"""Base episode seed of every evaluation: the same episodes (and pre-drawn faults) for every arm and seed."""
"""Edge-case name of episodes that met no edge case."""

_CURSOR = re.compile(r'"(?:next_cursor|nextCursor|cursor|next_page_token|nextPageToken)"\s*:\s*(?:"[^"\s]+"|\d+)')
_CONTINUATION = re.compile(r"more results not shown|\[output cut short|\[Showing results \d+-\d+ of \d+|"
                           r"\[Part \d+ of \d+|\"page\": \d+ for the next", re.IGNORECASE)
FAULT = re.compile(r"\b(?:429|5\d\d)\s+[A-Z][a-z]|\b(?:HTTP|status|code)\s*:?\s*(?:429|5\d\d)\b|"
                    r"(?i:time[ds]?[ -]?out|too many requests|rate limit)")
"""An operational fault: a 429 / 5xx status with its reason phrase (``503 Service Unavailable``) or after
``HTTP`` / ``status``, a timeout, a rate limit."""


def edge_cases(traj: Trajectory) -> set[str]:
    """The edge cases an episode met, read from its observations and its recorded perturbations.

    * ``pagination``: a tool result with a non-null next cursor (``next_cursor`` or a drifted name)
      or a continuation notice ("more results not shown", "[output cut short", ``"page": N``).
    * ``error``: an ``is_error`` tool result naming a 429, a 5xx status or a timeout.
    * every type in ``traj.info["perturbation_types"]`` (set by :func:`simrl.rollout.rollout` for
      :class:`~simrl.perturb.PerturbedEnv` episodes), e.g. ``rate_limit``, ``forced_pagination``.

    Args:
        traj: a finished trajectory.

    Returns:
        The names met (empty set: none).

    >>> from simrl.types import Action, Observation, Step, ToolResult, Turn
    >>> page = ToolResult(name="search_records", content='{"records": [], "next_cursor": "abc", "total": 9}')
    >>> busy = ToolResult(name="get_record", content="429 Too Many Requests: retry after 2 s", is_error=True)
    >>> turns = [Turn(action=Action.call("x"), step=Step(observation=Observation(text="", results=[r])))
    ...          for r in (page, busy)]
    >>> sorted(edge_cases(Trajectory(task_id="t", env_id="e", initial=Observation(text="?"), turns=turns,
    ...                              info={"perturbation_types": ["rate_limit"]})))
    ['error', 'pagination', 'rate_limit']
    """
    met: set[str] = set(traj.info.get("perturbation_types") or [])
    for turn in traj.turns:
        obs = turn.step.observation
        texts = [(r.content, r.is_error) for r in obs.results] or [(obs.text, False)]
        for text, is_error in texts:
            if is_error:
                if FAULT.search(text):
                    met.add("error")
            elif _CURSOR.search(text) or _CONTINUATION.search(text):
                met.add("pagination")
    return met


class EdgeCaseScore(BaseModel):
    """Episodes that met one edge case: how many, their success rate and mean turns."""

    episodes: int
    success: float
    mean_turns: float


Properties = dict[str, str | int | bool]
"""Task properties fixed before a run: ``kind`` (``read`` | ``write``), ``pages``, ``faults``."""
SUBSETS: dict[str, Callable[[Properties], bool]] = {
    "read": lambda p: p.get("kind") == "read",
    "write": lambda p: p.get("kind") == "write",
    "multi_page": lambda p: int(p.get("pages", 1)) > 1,
    "faulted": lambda p: int(p.get("faults", 0)) > 0,
    "plain": lambda p: int(p.get("pages", 1)) <= 1 and int(p.get("faults", 0)) == 0,
}
"""The evaluation subsets, by task properties (identical membership in every arm): reads, writes, tasks whose
gold answer needs more than one result page, tasks with at least one pre-drawn fault on their episodes, and
tasks with neither (the skill-free rest)."""
BASELINES = ("candidates", "warmstart", "untrained")
"""Baseline policies evaluated beside the arms (:func:`evaluate_baseline`), in report order; a recipe's
``primary.b`` may name one."""


class TaskResult(BaseModel):
    """One task's trials (in trial order) and its properties (fixed before the run, the same in every arm)."""

    task_id: str
    type: str
    success: list[bool]
    reward: list[float]
    properties: Properties = Field(default_factory=dict)


class SubsetScore(BaseModel):
    """A subset of :data:`SUBSETS`: its tasks, their episodes and the success rate over those episodes."""

    tasks: int
    episodes: int
    success: float


def subset_scores(per_task: Sequence[TaskResult]) -> dict[str, SubsetScore]:
    """:class:`SubsetScore` of every subset of :data:`SUBSETS` that has tasks (tasks without properties: none)."""
    out = {}
    for name, member in SUBSETS.items():
        chosen = [t for t in per_task if t.properties and member(t.properties)]
        if chosen:
            ok = [s for t in chosen for s in t.success]
            out[name] = SubsetScore(tasks=len(chosen), episodes=len(ok), success=_mean([float(v) for v in ok]))
    return out


class EvalResult(BaseModel):
    """The evaluation of one policy on a set of tasks (``eval.json``).

    Attributes:
        label: what was evaluated (a checkpoint path, a policy spec, ``untrained``...).
        env_id: the environment. tasks, trials, episodes: counts (episodes = tasks x trials).
        metrics: ``success`` (mean over episodes, env failures count as failures), ``reward``,
            ``avg@k`` / ``pass@k`` (success), ``item_f1`` / ``row_f1`` and their ``avg@k/`` /
            ``pass@k/`` forms (table tasks only), ``mean_turns``, ``env_failures`` (failed tool
            steps, summed), ``env_failure_rate`` / ``truncated_rate`` (shares of episodes). Ratios in [0, 1].
        edge_cases: :class:`EdgeCaseScore` per edge case met (:func:`edge_cases`), then ``none``
            (descriptive: what this policy met; not comparable across arms).
        subsets: :class:`SubsetScore` per subset of :data:`SUBSETS` (task properties fixed before the run).
        dropped, dropped_ids: evaluation tasks left out before the run because the scripted expert could
            not solve them within the turn limit.
        per_task: every task's trials.
    """

    label: str = ""
    env_id: str = ""
    tasks: int
    trials: int
    episodes: int
    metrics: dict[str, float]
    edge_cases: dict[str, EdgeCaseScore] = Field(default_factory=dict)
    subsets: dict[str, SubsetScore] = Field(default_factory=dict)
    dropped: int = 0
    dropped_ids: list[str] = Field(default_factory=list)
    per_task: list[TaskResult] = Field(default_factory=list)


def _avg_pass(per_task: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(avg@k, pass@k): per task the mean and the max over its trials, then the mean over tasks."""
    return (sum(sum(v) / len(v) for v in per_task) / len(per_task),
            sum(max(v) for v in per_task) / len(per_task))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def split_by_edge_case(trajs: Sequence[Trajectory]) -> dict[str, EdgeCaseScore]:
    """Success and mean turns per edge case met (an episode counts once per case), names sorted, ``none`` last."""
    groups: dict[str, list[Trajectory]] = {}
    for t in trajs:
        for name in edge_cases(t) or {NONE}:
            groups.setdefault(name, []).append(t)
    order = sorted(k for k in groups if k != NONE) + ([NONE] if NONE in groups else [])
    return {k: EdgeCaseScore(episodes=len(groups[k]), success=_mean([t.status == "success" for t in groups[k]]),
                             mean_turns=_mean([len(t.turns) for t in groups[k]])) for k in order}


def summarize(trajs: Sequence[Trajectory], tasks: Sequence[Task], trials: int, *, label: str = "",
              env_id: str = "", properties: dict[str, Properties] | None = None,
              dropped: Sequence[str] = ()) -> EvalResult:
    """Score trajectories laid out trial by trial: ``trajs[r * len(tasks) + i]`` is trial ``r`` of ``tasks[i]``.

    ``properties`` (task id -> :data:`Properties`) gives the subsets; ``dropped`` the ids left out before.

    Raises:
        ValueError: ``len(trajs) != len(tasks) * trials`` or no tasks.
    """
    n = len(tasks)
    if n == 0 or trials < 1 or len(trajs) != n * trials:
        raise ValueError(f"expected {n} tasks x {trials} trials trajectories, got {len(trajs)}")
    by_task = [[trajs[r * n + i] for r in range(trials)] for i in range(n)]
    ok = [[float(t.status == "success") for t in ts] for ts in by_task]
    avg, best = _avg_pass(ok)
    k = trials
    metrics = {"success": _mean([float(t.status == "success") for t in trajs]), "reward": _mean([t.reward for t in trajs]),
               f"avg@{k}": avg, f"pass@{k}": best, "mean_turns": _mean([len(t.turns) for t in trajs]),
               "env_failures": float(sum(int(t.info.get("env_failures", 0)) for t in trajs)),
               "env_failure_rate": _mean([t.status == "env_failure" for t in trajs]),
               "truncated_rate": _mean([t.status == "truncated" for t in trajs])}
    tables = [ts for ts, task in zip(by_task, tasks) if task.type == "table"]
    for name in ("item_f1", "row_f1") if tables else ():
        values = [[float((t.info.get("metrics") or {}).get(name, 0.0)) for t in ts] for ts in tables]
        metrics[f"avg@{k}/{name}"], metrics[f"pass@{k}/{name}"] = _avg_pass(values)
        metrics[name] = metrics[f"avg@{k}/{name}"]
    props = properties or {}
    per_task = [TaskResult(task_id=task.task_id, type=task.type, success=[bool(v) for v in o],
                           reward=[t.reward for t in ts], properties=props.get(task.task_id, {}))
                for task, ts, o in zip(tasks, by_task, ok)]
    return EvalResult(label=label, env_id=env_id or (trajs[0].env_id if trajs else ""), tasks=n, trials=trials,
                      episodes=len(trajs), metrics=metrics, edge_cases=split_by_edge_case(trajs),
                      subsets=subset_scores(per_task), dropped=len(dropped), dropped_ids=list(dropped),
                      per_task=per_task)


def evaluate_policy(policy: Policy, env_factory: Callable[[], Environment], tasks: Sequence[Task], *,
                    trials: int = 1, max_turns: int = 30, seed: int = 0, out: str | Path | None = None,
                    concurrency: int = 4, label: str = "",
                    on_done: Callable[[Trajectory], None] | None = None,
                    properties: dict[str, Properties] | None = None, dropped: Sequence[str] = ()) -> EvalResult:
    """Run ``trials`` episodes of ``policy`` on each task and score them (synchronous: runs its own event loop).

    Args:
        policy: any :class:`~simrl.rollout.Policy` (set ``greedy`` on a ScorerPolicy beforehand).
        env_factory: makes a fresh (real) environment per episode; closed after it.
        tasks: held-out tasks (``Task.policy_view`` is all the policy sees).
        trials: episodes per task (k of pass@k / avg@k), run one trial after another (policies that
            keep per-task state, like the scripted experts, see one episode of a task at a time). Trial
            ``r`` of task ``i`` gets episode seed ``seed + r * len(tasks) + i`` (seeded faults differ).
        max_turns: turn limit per episode.
        out: a folder: writes ``eval.json`` and ``eval_trajectories.jsonl`` (both replaced).
        concurrency: episodes in flight at once.
        label: recorded in the result. on_done: called with each finished trajectory (progress).
        properties, dropped: task properties and the ids dropped before the run
            (:func:`simrl.experiment.eval_tasks.prepare`), recorded in the result.

    Returns:
        the :class:`EvalResult` (also ``out/eval.json`` when ``out`` is given).

    Raises:
        SimrlError: no tasks, ``trials < 1``. Policy exceptions propagate; environment failures are
        recorded in the trajectories, never raised (:func:`simrl.rollout.run_episode`).
    """
    from simrl.errors import SimrlError

    if not tasks:
        raise SimrlError("evaluation needs at least one task")
    if trials < 1:
        raise SimrlError(f"trials must be at least 1, got {trials}")

    async def all_trials() -> list[Trajectory]:  # one trial after another: a task never runs twice at once
        done: list[Trajectory] = []
        for r in range(trials):
            done += await rollout(env_factory, policy, tasks, max_turns=max_turns, concurrency=concurrency,
                                  seed=seed + r * len(tasks), writer=writer, on_done=on_done)
        return done

    writer = None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / EVAL_TRAJECTORIES).unlink(missing_ok=True)
        writer = TrajectoryWriter(Path(out) / EVAL_TRAJECTORIES)
    try:
        trajs = asyncio.run(all_trials())
    finally:
        if writer is not None:
            writer.close()
    result = summarize(trajs, tasks, trials, label=label, properties=properties, dropped=dropped)
    if out is not None:
        (Path(out) / EVAL_JSON).write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return result


def load_eval(folder: str | Path) -> EvalResult:
    """Read ``eval.json`` of ``folder`` (written by :func:`evaluate_policy`)."""
    return EvalResult.model_validate_json((Path(folder) / EVAL_JSON).read_text(encoding="utf-8"))


def merge_results(results: Sequence[EvalResult], label: str = "") -> EvalResult:
    """Pool evaluations of one policy on disjoint task sets (e.g. several held-out worlds) into one.

    Success, reward, avg@k and pass@k are recomputed from the pooled per-task trials; table F1s are
    weighted by each part's table tasks, every other metric and each edge case by its episodes.

    Raises:
        ValueError: no results, or parts with different trial counts.
    """
    if not results:
        raise ValueError("merge_results needs at least one evaluation")
    if len({r.trials for r in results}) > 1:
        raise ValueError(f"cannot pool evaluations with different trials: {[r.trials for r in results]}")
    if len(results) == 1:
        return results[0].model_copy(update={"label": label or results[0].label})
    k, per_task = results[0].trials, [t for r in results for t in r.per_task]
    tables = [sum(t.type == "table" for t in r.per_task) for r in results]
    metrics: dict[str, float] = {}
    for name in sorted({m for r in results for m in r.metrics}):
        weights = tables if "_f1" in name else [r.episodes for r in results]
        parts = [(w, r.metrics[name]) for w, r in zip(weights, results) if name in r.metrics and w]
        total = sum(w for w, _ in parts)
        if name == "env_failures":  # a count: summed
            metrics[name] = sum(v for _, v in parts)
        else:
            metrics[name] = sum(w * v for w, v in parts) / total if total else 0.0
    ok = [[float(s) for s in t.success] for t in per_task]
    metrics[f"avg@{k}"], metrics[f"pass@{k}"] = _avg_pass(ok)
    metrics["success"] = _mean([v for o in ok for v in o])
    metrics["reward"] = _mean([v for t in per_task for v in t.reward])
    cases: dict[str, EdgeCaseScore] = {}
    for name in sorted({c for r in results for c in r.edge_cases}, key=lambda c: (c == NONE, c)):
        parts = [r.edge_cases[name] for r in results if name in r.edge_cases]
        n = sum(p.episodes for p in parts)
        cases[name] = EdgeCaseScore(episodes=n, success=sum(p.success * p.episodes for p in parts) / n,
                                    mean_turns=sum(p.mean_turns * p.episodes for p in parts) / n)
    return EvalResult(label=label, env_id=results[0].env_id, tasks=len(per_task), trials=k,
                      episodes=sum(r.episodes for r in results), metrics=metrics, edge_cases=cases,
                      subsets=subset_scores(per_task), dropped=sum(r.dropped for r in results),
                      dropped_ids=[i for r in results for i in r.dropped_ids], per_task=per_task)


def load_run_eval(folder: str | Path) -> EvalResult | None:
    """The pooled held-out evaluation of a run (or baseline) folder: every ``eval/<label>/eval.json`` merged.

    Labels are those :func:`evaluate_heldout` writes (``<split>``, ``heldout-seed<S>``).
    Returns None when the folder has no evaluation.
    """
    parts = sorted((Path(folder) / "eval").glob(f"*/{EVAL_JSON}"))
    return merge_results([load_eval(p.parent) for p in parts], label=str(folder)) if parts else None


def _evaluate_into(recipe, policy, folder: Path, seed: int, worlds: Path) -> EvalResult:
    """Run the recipe's held-out evaluation (:func:`evaluate_heldout`) into ``folder/eval``."""
    from simrl.experiment import runs

    evaluate_heldout(recipe, policy, runs.RunFiles(folder), runs.training_world(recipe, worlds), worlds, seed)
    result = load_run_eval(folder)
    assert result is not None
    return result


def evaluate_run(run_dir: str | Path, recipe, *, worlds: str | Path | None = None,
                 checkpoint: str = "final.pt", out: str | Path | None = None, policy: Policy | None = None) -> EvalResult:
    """Evaluate a training run's ``final.pt`` (greedy per ``recipe.evaluation``) on the recipe's held-out real tasks.

    Args:
        run_dir: ``OUT/<arm>/seed-<S>`` of ``simrl train`` (its seed is read from the folder name).
        recipe: the run's :class:`~simrl.experiment.recipe.Recipe`.
        worlds: the shared worlds folder (default ``OUT/worlds``, two levels up).
        checkpoint: the policy file (or model folder) inside ``run_dir``.
        out: where ``eval/<label>/`` is written (default ``run_dir``: the run's own evaluation).
        policy: the loaded policy (default: ``checkpoint`` loaded as a ScorerPolicy), e.g. an
            :class:`~simrl.policies.hf_policy.HFPolicy` of a trl run's ``final/``.

    Returns:
        The evaluation pooled over the training world's ``evaluation.split`` tasks and the held-out
        worlds (files under ``OUT/eval/<label>/``), with the episode seeds the run's own evaluation used.

    Raises:
        SimrlError: no such checkpoint, or a folder name without ``seed-<S>``.
    """
    from simrl.errors import SimrlError
    from simrl.policies.scorer import ScorerPolicy

    run = Path(run_dir)
    match = re.fullmatch(r"seed-(\d+)", run.name)
    if match is None or not (run / checkpoint).exists():
        raise SimrlError(f"{run} is not a finished run (need {checkpoint} in a seed-<S> folder of `simrl train`)")
    policy = policy if policy is not None else ScorerPolicy.load(run / checkpoint)
    return _evaluate_into(recipe, policy, Path(out) if out is not None else run, int(match.group(1)),
                          Path(worlds or run.parent.parent / "worlds"))


def evaluate_baseline(recipe, name: str, seed: int, folder: str | Path, *, worlds: str | Path,
                      warmstart: str | Path | None = None) -> EvalResult:
    """Evaluate a baseline of ``seed`` like a run (same tasks, same episode seeds): writes ``folder/eval/``.

    ``untrained``: a fresh :class:`~simrl.policies.scorer.ScorerPolicy` built from ``recipe.policy`` with
    ``seed`` (the policy a run starts from, before any warm start); ``warmstart``: the behaviour-cloned
    policy ``warmstart`` (a run's ``warmstart.pt``); ``candidates``: a uniform random choice among the
    candidate actions of each turn (:class:`~simrl.policies.scorer.RandomCandidatePolicy`, seeded by ``seed``):
    what the action space alone gives, the floor a trained policy must beat.

    Raises:
        SimrlError: an unknown baseline name, or ``warmstart`` without a file.
    """
    from simrl.errors import SimrlError
    from simrl.policies.scorer import RandomCandidatePolicy, ScorerPolicy

    if name == "candidates":
        policy = RandomCandidatePolicy(seed=seed)
    elif name == "untrained":
        p = recipe.policy  # the weights come from ``seed`` alone (ScorerPolicy seeds them itself, thread-safely)
        policy = ScorerPolicy(dim=p.dim, buckets=p.buckets, seed=seed, temperature=p.temperature, greedy=False)
    elif name == "warmstart" and warmstart is not None and Path(warmstart).is_file():
        policy = ScorerPolicy.load(warmstart)
    else:
        raise SimrlError(f"baseline {name!r}: use untrained, candidates, or warmstart with a run's warmstart.pt")
    return _evaluate_into(recipe, policy, Path(folder), seed, Path(worlds))


def evaluation_sets(recipe: Recipe, world: Path, worlds: Path) -> list[tuple[str, Path, Prepared]]:
    """``(label, world, evaluation set)`` of each held-out evaluation of ``recipe`` (see :func:`evaluate_heldout`):
    ``<evaluation.split>`` of the training ``world``, then ``heldout-seed<S>`` of each held-out world, each fixed
    by :func:`simrl.experiment.eval_tasks.prepare` (cached under ``worlds/eval-sets``).

    Raises:
        SimrlError: a set where the scripted expert solves no task within ``budget.max_turns``.
    """
    import hashlib
    import json

    from simrl.errors import SimrlError
    from simrl.experiment import runs
    from simrl.experiment.eval_tasks import prepare

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


CURVE = "curve.jsonl"
"""A run's held-out learning curve (``evaluation.every``): one :func:`curve_point` per line."""


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
    from simrl.experiment import runs

    greedy, policy.greedy = policy.greedy, True  # type: ignore[attr-defined]  # as evaluate_heldout sets it
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


def evaluate_heldout(recipe: Recipe, policy: Policy, files: runs.RunFiles, world: Path, worlds: Path,
                     seed: int) -> dict[str, dict[str, float]]:
    """Evaluate ``policy`` in the REAL environment on held-out tasks; returns label -> metrics.

    Labels: ``<evaluation.split>`` (that split of the training world) and ``heldout-seed<S>`` (every task of
    each held-out world, ``world.eval_worlds``), at most ``evaluation.max_tasks`` each, ``evaluation.trials``
    episodes per task at episode seeds from :data:`EVAL_SEED` (not from ``seed``: every arm, seed and
    baseline meets the same episodes), written to ``eval/<label>/eval.json`` (+ ``eval_trajectories.jsonl``)
    by :func:`evaluate_policy`; ``all`` is their pool
    (:func:`merge_results`, as :func:`load_run_eval` reads it).
    The task sets are fixed first by :func:`evaluation_sets` (tasks the scripted expert cannot solve within
    ``budget.max_turns`` dropped; task properties), cached under ``worlds``.
    """
    from simrl.experiment import runs

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
