"""Evaluation results: scores over episodes and tasks (success, pass@k / avg@k, WideSearch F1), subsets, pooling.

:func:`summarize` turns the trajectories of an evaluation (:func:`simrl.evaluation.evaluate.evaluate_policy`)
into an :class:`EvalResult` (``eval.json``). Multi-trial numbers follow WideSearch's definition
(:func:`simrl.reward.widesearch.aggregate_trials`): per task the mean (avg@k) and the max (pass@k)
over its k trials, then the mean over tasks. Table tasks also get item and row F1 (from the final
step's ``info["metrics"]``, which the environment scores with WideSearch's metrics).

Subsets are defined BEFORE the run, from task properties that every arm shares
(:attr:`TaskResult.properties`: ``kind`` read / write, ``pages`` the gold answer needs, ``faults``
pre-drawn on the task's episode seeds; :mod:`simrl.evaluation.eval_set` fixes them and drops the tasks
the scripted expert cannot solve within the turn limit): :data:`SUBSETS` is the one registry of
their names. Edge cases read off each trajectory's own text (:mod:`simrl.evaluation.edge_cases`) are kept
as a description of what each policy met; they differ by arm and are not for comparisons.
:func:`merge_results` pools the evaluations of one policy on disjoint task sets; :func:`load_run_eval` reads
a run's (or baseline's) pooled held-out evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from simrl.evaluation.edge_cases import NONE, EdgeCaseScore, mean, split_by_edge_case
from simrl.types import Trajectory
from simrl.world.schema import Task

EVAL_JSON = "eval.json"
EVAL_TRAJECTORIES = "eval_trajectories.jsonl"

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
OVERALL = "overall"
"""Every evaluation task (no subset): a comparison's or the positive control's name for the whole set."""
TASK_SUBSETS = ("read", "write", "multi_page")
"""The subsets that are properties of a task alone: the pre-drawn faults of ``faulted`` and ``plain`` belong to an
evaluation's episode seeds. What a recipe's ``budget.task_weights`` may name (training tasks are sampled by them)."""


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
            out[name] = SubsetScore(tasks=len(chosen), episodes=len(ok), success=mean([float(v) for v in ok]))
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
        edge_cases: :class:`EdgeCaseScore` per edge case met (:func:`simrl.evaluation.edge_cases.edge_cases`), then ``none``
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
    metrics = {"success": mean([float(t.status == "success") for t in trajs]), "reward": mean([t.reward for t in trajs]),
               f"avg@{k}": avg, f"pass@{k}": best, "mean_turns": mean([len(t.turns) for t in trajs]),
               "env_failures": float(sum(int(t.info.get("env_failures", 0)) for t in trajs)),
               "env_failure_rate": mean([t.status == "env_failure" for t in trajs]),
               "truncated_rate": mean([t.status == "truncated" for t in trajs])}
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
    metrics["success"] = mean([v for o in ok for v in o])
    metrics["reward"] = mean([v for t in per_task for v in t.reward])
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

    Labels are those :func:`simrl.experiment.heldout.evaluate_heldout` writes (``<split>``, ``heldout-seed<S>``).
    Returns None when the folder has no evaluation.
    """
    parts = sorted((Path(folder) / "eval").glob(f"*/{EVAL_JSON}"))
    return merge_results([load_eval(p.parent) for p in parts], label=str(folder)) if parts else None


