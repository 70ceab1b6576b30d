"""``simrl ablate --dry-run``: what an ablation would run, and roughly how long it would take; nothing runs.

The plan lists the arm x seed runs (finished, partly trained or new, from their folders under ``OUT``), the
baseline evaluations, the evaluation size and an estimated time:

* evaluation tasks per world are counted from the world spec (:func:`simrl.world.tasks.task_count`, the
  split's share of a training world, every task of a held-out world; ``evaluation.max_tasks`` caps
  each), so no world is generated: a world's split is drawn per task and tasks the scripted expert cannot
  solve are dropped at run time, so the count is approximate;
* time = turns x seconds per turn, training turns spread over ``min(jobs, runs)`` processes and
  evaluation turns over ``min(jobs, evaluations)``. Each arm's turns per episode and seconds per turn come
  from its own runs already under ``OUT`` when there are some (their ``metrics.jsonl``: wall seconds and
  turns); else, for an arm whose environment is a language world model (a backend of
  :data:`simrl.wm.factory.LLM_BACKENDS`), they are unknown (a prediction takes seconds on a CPU, depending on
  the model, its answers and the response cache) and its training is left out of the estimate and named;
  else from :data:`SECONDS_PER_TURN` and :data:`TURNS_PER_EPISODE`, measured on the quickstart. Evaluation
  (always in the real environment) uses the rate of the arms without a language model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from simrl.experiment import runs
from simrl.experiment.recipe import Recipe

SECONDS_PER_TURN = 0.0023
"""CPU seconds per episode turn of the embedded trainer (scorer policy over generic candidates, GiGPO update,
and a share of the run's start-up and warm start) in the quickstart's mcp-world with the in-process record server,
calibrated so that the plan's training plus evaluation time matches a measured run: ``simrl ablate quickstart``
at commit 2ccfa5e (240 steps, 7 seeds, 2 jobs, 2026-12-07, the 2-core development machine with nothing else
running) took 8 min 46 s wall and 991 s CPU for 308,230 training turns (80,640 episodes) and 42 evaluations of
about 1,030 episodes each (benchmarks/RESULTS.md; 9 min 25 s and 1,064 s at 8998879, where the rate was 0.0025);
the plan at these rates says about 9 min. The training turn alone costs about 1.0-1.1 ms
(``benchmarks/bench_train.py``); the rest of the rate is the run's start-up, warm start and bookkeeping."""

TURNS_PER_EPISODE = 3.8
"""Mean turns per training episode of the same ablation (308,230 turns / 80,640 episodes), capped by
``budget.max_turns``."""


@dataclass(frozen=True)
class Plan:
    """What ``simrl ablate`` would do (see the module docstring); times in seconds."""

    runs: int
    finished: int
    partial: int
    episodes_per_run: int
    train_episodes: int  # still to train, over every unfinished run
    baselines: tuple[str, ...]
    evaluations: int  # runs + baseline evaluations still to do
    eval_tasks: int  # per evaluation, from the world spec (0: unknown)
    eval_episodes: int  # per evaluation: tasks x trials
    turns_per_episode: float  # the arms without a language world model (and evaluation)
    seconds_per_turn: float
    measured_runs: int  # runs under OUT the two rates were measured on (0: the constants)
    train_s: float  # without the training of the arms in ``unmeasured``
    eval_s: float
    jobs: int
    lm_rates: dict[str, tuple[float, float, int]]  # language-model arm -> its own measured (turns, s/turn, runs)
    unmeasured: tuple[str, ...]  # language-model arms with unfinished runs and no measured step: not estimated


def measured_rates(folders: list[Path]) -> tuple[float, float, int] | None:
    """``(turns per episode, wall seconds per turn, runs)`` pooled over the ``metrics.jsonl`` of ``folders``;
    None when none has a step."""
    turns = episodes = seconds = 0.0
    used = 0
    for folder in folders:
        rows = []
        try:
            rows = [json.loads(line) for line in runs.RunFiles(folder).metrics.read_text(encoding="utf-8").splitlines()]
        except (OSError, ValueError):
            continue
        rows = [r for r in rows if isinstance(r, dict) and r.get("episodes")]
        if rows:
            used += 1
            turns += sum(r["turns"] * r["episodes"] for r in rows)
            episodes += sum(r["episodes"] for r in rows)
            seconds += max(r.get("wall_s", 0.0) for r in rows)
    if not used or not turns:
        return None
    return turns / episodes, seconds / turns, used


def eval_tasks(recipe: Recipe) -> int:
    """Evaluation tasks of one run or baseline, about: the split's share of the training world's tasks of the
    recipe's task types, plus every task of each held-out world (as :func:`simrl.experiment.heldout.evaluation_sets`
    takes them, whether or not the spec lists its seed in ``splits.heldout_seeds``), each world capped at
    ``evaluation.max_tasks``.
    0 when the world is a folder or spec that cannot be read here (the count is then unknown)."""
    from simrl.errors import SimrlError
    from simrl.world import load_spec
    from simrl.world.tasks import task_count

    source = Path(recipe.world.spec)
    try:
        spec = load_spec(source / "spec.yaml" if source.is_dir() else source)
    except (SimrlError, OSError):
        return 0
    entities = recipe.world.entities or spec.entities
    kinds = [k for k in recipe.env.types() if hasattr(spec.tasks, k)]
    per_world = sum(task_count(spec, k, entities) for k in kinds)
    cap = recipe.evaluation.max_tasks or per_world
    share = getattr(spec.splits, recipe.evaluation.split)
    worlds = [min(cap, round(per_world * share))]
    worlds += [min(cap, per_world) for _ in recipe.world.eval_worlds]  # every task of a held-out world
    return sum(worlds)


def plan(recipe: Recipe, out: Path, jobs: int) -> Plan:
    """The plan of ``simrl ablate RECIPE --out OUT --jobs JOBS`` (reads ``OUT``, writes nothing)."""
    from simrl.evaluation.results import load_run_eval
    from simrl.experiment.ablate import plan_runs
    from simrl.experiment.jobs import finished, logged_steps

    b = recipe.budget
    todo = plan_runs(recipe, out)
    done = [j for j in todo if finished(j, b.steps)]
    steps_done = {j: min(b.steps, logged_steps(j)) for j in todo if j not in done}
    per_run = b.steps * b.batch * b.group_size
    train_episodes = sum((b.steps - n) * b.batch * b.group_size for n in steps_done.values())
    baselines = tuple(n for n in recipe.baselines if n != "warmstart" or (recipe.warm_start and recipe.warm_start.demos))
    evaluations = sum(load_run_eval(j.folder) is None for j in todo) + sum(
        load_run_eval(out / "baselines" / n / f"seed-{s}") is None for n in baselines for s in recipe.seeds)
    lm = {name for name, arm in recipe.all_arms().items() if _language_model(arm)}
    measured = measured_rates([j.folder for j in todo if j.arm not in lm])
    turns, per_turn, used = measured if measured else (min(TURNS_PER_EPISODE, b.max_turns), SECONDS_PER_TURN, 0)
    lm_rates = {arm: r for arm in sorted(lm) if (r := measured_rates([j.folder for j in todo if j.arm == arm]))}
    unmeasured = tuple(sorted({j.arm for j in steps_done if j.arm in lm and j.arm not in lm_rates}))
    episode_s = {arm: r[0] * r[1] for arm, r in lm_rates.items()}
    train_cpu_s = sum((b.steps - n) * b.batch * b.group_size * episode_s.get(j.arm, turns * per_turn)
                      for j, n in steps_done.items() if j.arm not in unmeasured)
    tasks = eval_tasks(recipe)
    eval_episodes = tasks * recipe.evaluation.trials
    unfinished = len(steps_done)
    train_s = train_cpu_s / max(1, min(jobs, unfinished))
    eval_s = evaluations * eval_episodes * turns * per_turn / max(1, min(jobs, evaluations))
    return Plan(runs=len(todo), finished=len(done), partial=sum(1 for n in steps_done.values() if n),
                episodes_per_run=per_run, train_episodes=train_episodes, baselines=baselines,
                evaluations=evaluations, eval_tasks=tasks, eval_episodes=eval_episodes, turns_per_episode=turns,
                seconds_per_turn=per_turn, measured_runs=used, train_s=train_s, eval_s=eval_s, jobs=jobs,
                lm_rates=lm_rates, unmeasured=unmeasured)


def _language_model(arm: object) -> bool:
    """True for an arm whose training environment is a language world model (not the real one, not the oracle)."""
    from simrl.wm.factory import LLM_BACKENDS

    return getattr(arm, "environment", "") == "world_model" and arm.world_model() in LLM_BACKENDS


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.4 h``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def describe(recipe: Recipe, out: Path, p: Plan) -> list[str]:
    """The plan as lines for the terminal."""
    b, ev = recipe.budget, recipe.evaluation
    arms = recipe.all_arms()
    rate = (f"{p.seconds_per_turn * 1000:.1f} ms per turn and {p.turns_per_episode:.1f} turns per episode, measured "
            f"on {p.measured_runs} run(s) under {out}" if p.measured_runs else
            f"{p.seconds_per_turn * 1000:.1f} ms per turn and {p.turns_per_episode:.1f} turns per episode (CPU time "
            "measured on the quickstart: a loaded machine or another environment or policy takes longer)")
    worlds = f"the training world's {ev.split} split" + (
        f" and {len(recipe.world.eval_worlds)} held-out world(s)" if recipe.world.eval_worlds else "")
    tasks = f"about {p.eval_tasks}" if p.eval_tasks else "an unknown number of"
    lm = [f"{arm} {r[1]:.1f} s per turn and {r[0]:.1f} turns per episode, measured on {r[2]} run(s)"
          for arm, r in p.lm_rates.items()]
    left_out = ([f"NOT included: the training of {', '.join(p.unmeasured)} (a language world model: seconds a "
                 "prediction on a CPU, unknown until one of its runs has logged a step under OUT; start it, stop it "
                 "after a step or two, and plan again)"] if p.unmeasured else [])
    return [
        f"plan of ablation {recipe.name} -> {out} ({p.jobs} at once)",
        f"runs: {p.runs} ({len(arms)} arm(s): {', '.join(arms)} x {len(recipe.seeds)} seed(s)): {p.finished} finished, "
        f"{p.partial} partly trained, {p.runs - p.finished - p.partial} new; each {b.steps} steps x {b.batch} tasks x "
        f"{b.group_size} episodes = {p.episodes_per_run} episodes, at most {b.max_turns} turns each",
        f"baselines: {', '.join(p.baselines)} x {len(recipe.seeds)} seed(s)",
        f"evaluation: {tasks} tasks ({worlds}; the expert's unsolvable ones are dropped) x {ev.trials} trial(s) per "
        f"run and baseline; {p.evaluations} evaluation(s) to do",
        f"estimated time: about {_duration(p.train_s + p.eval_s)} (training {_duration(p.train_s)}, evaluation "
        f"{_duration(p.eval_s)}) at {rate}" + (f"; language-model arms: {'; '.join(lm)}" if lm else ""),
        *left_out,
        "nothing was run (drop --dry-run to start)",
    ]
