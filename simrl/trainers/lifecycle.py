"""The run lifecycle every trainer uses (embedded, trl, verl): one run folder, one summary, one evaluation.

A trainer's ``train_arm(recipe, arm, seed, out_dir, ...)`` does, around its own training loop:

1. :func:`begin_run`: refuse a started folder without ``resume`` or started with a recipe that changes
   the run (:mod:`simrl.experiment.resume`), return the summary of a finished run, else write ``recipe.yaml``;
2. per step, one :class:`StepMetrics` line in ``metrics.jsonl`` (:func:`measure_step` builds it from the
   step's episodes; :func:`format_metrics` is its progress-bar line; :func:`read_history` reads them back);
3. :func:`simrl.experiment.heldout.evaluate_heldout`: the held-out evaluation in the REAL environment, the
   same episodes for every arm, seed, baseline and trainer (:data:`simrl.evaluation.evaluate.EVAL_SEED`);
4. :func:`finish_run`: ``summary.json`` (:class:`RunSummary`), written atomically.

The folder layout itself is :mod:`simrl.experiment.runs`.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable

from pydantic import BaseModel

from simrl.errors import SimrlError
from simrl.experiment import runs
from simrl.experiment.recipe import Recipe, recipe_yaml

Progress = Callable[[int, int, str], None]
"""``progress(steps_done, steps_total, message)``: called as the run advances (a bar and a metrics line)."""


class StepMetrics(BaseModel):
    """One line of ``metrics.jsonl``: what one GRPO step did (rates in [0, 1], times in seconds)."""

    step: int  # 1-based: the number of updates done after this one
    progress: float  # training progress at which the schedule's curriculum was read
    reward: float  # mean episode reward over the valid episodes
    success: float  # share of valid episodes that solved their task
    turns: float  # mean turns per episode (all episodes)
    episodes: int  # batch x group_size
    valid_episodes: int  # episodes that are not env_failure
    env_failures: int  # episodes excluded from the signal (status env_failure)
    loss: float  # the GRPO loss of the update (0 when every advantage was 0)
    grad_norm: float  # gradient norm before clipping (0 without an update)
    perturbations: int  # perturbations met, summed over episodes
    coverage: float | None  # share of the updated episodes' actions that were candidates (None: no update)
    signal_groups: float | None = None  # share of GRPO groups whose valid rewards differ (the rest teach nothing)
    wm_unparsed: int = 0  # steps whose world-model answer had no <predicted_observation> block (shown raw)
    wall_s: float  # training seconds so far, over every resume
    # -- diagnostics (None where the trainer does not measure them) --
    reward_std: float | None = None  # mean over groups of the reward's standard deviation within the group
    zero_advantage: float | None = None  # share of valid episodes whose every turn got advantage 0
    entropy: float | None = None  # mean entropy (nats) of the sampling policy at the step's decision points
    kl_warm_start: float | None = None  # mean KL(policy || warm start) at the step's decision points (nats)
    lr: float | None = None  # learning rate of the update
    rollout_s: float | None = None  # seconds spent running the step's episodes
    update_s: float | None = None  # seconds spent on the update (forward, backward, optimiser)
    skills: dict[str, float | None] = {}  # simrl.experiment.skills.skill_rates of the step's episodes


def read_history(files: runs.RunFiles) -> list[StepMetrics]:
    """The steps logged in a run's ``metrics.jsonl`` so far (empty when there is none)."""
    if not files.metrics.exists():
        return []
    lines = files.metrics.read_text(encoding="utf-8").splitlines()
    return [StepMetrics.model_validate_json(line) for line in lines]


class RunSummary(BaseModel):
    """``summary.json`` of a run: where it is, how long it took, and what it reached."""

    recipe: str
    arm: str
    seed: int
    run_dir: str
    steps: int
    resumed_from: int | None  # the checkpoint step this process started from (None: a fresh run)
    episodes: int
    env_failures: int
    first_reward: float  # mean reward of the first step
    final_reward: float  # mean reward over the last (up to) 5 steps
    final_success: float  # success rate over the last (up to) 5 steps
    wall_s: float
    warm_start: dict[str, float] | None  # behaviour_cloning's loss / accuracy / coverage (+ demos)
    evaluation: dict[str, dict[str, float]] | None  # eval label -> metrics (None: not evaluated)


def signal_share(trajs: list, group_size: int) -> float | None:
    """Share of the GRPO groups (consecutive ``group_size`` episodes) with a learning signal: at least two
    valid episodes whose rewards differ. With none, every advantage is 0 and the step changes nothing
    (the entropy bonus aside); a low share says to sample more diversely (``policy.temperature``,
    ``trainer.entropy_coef``) or to use bigger groups.

    >>> from types import SimpleNamespace as T
    >>> signal_share([T(reward=1, status="success"), T(reward=0, status="failure"),
    ...               T(reward=1, status="success"), T(reward=1, status="success")], 2)
    0.5
    """
    groups = [trajs[i:i + group_size] for i in range(0, len(trajs), group_size)]
    if not groups or group_size < 2:
        return None
    rich = [len({t.reward for t in g if t.status != "env_failure"}) > 1 for g in groups]
    return sum(rich) / len(rich)


def measure_step(step: int, progress: float, trajs: list, loss: float, norm: float, coverage: float | None,
                 wall_s: float, group_size: int = 0) -> StepMetrics:
    """One step's :class:`StepMetrics` from its episodes ``trajs`` (``wall_s``: training seconds so far)."""
    valid = [t for t in trajs if t.status != "env_failure"]

    def mean(xs: list) -> float:
        return statistics.fmean(xs) if xs else 0.0

    return StepMetrics(step=step, progress=round(progress, 6), reward=mean([t.reward for t in valid]),
                       success=mean([t.status == "success" for t in valid]),
                       turns=mean([len(t.turns) for t in trajs]), episodes=len(trajs),
                       valid_episodes=len(valid), env_failures=len(trajs) - len(valid), loss=loss,
                       grad_norm=norm, perturbations=sum(len(t.info.get("perturbations", [])) for t in trajs),
                       coverage=coverage, signal_groups=signal_share(trajs, group_size), wall_s=round(wall_s, 3),
                       wm_unparsed=sum(int(t.info.get("wm_unparsed", 0)) for t in trajs))


def format_metrics(m: StepMetrics) -> str:
    """A one-line view of a step for the progress bar."""
    signal = f"  signal {m.signal_groups:.0%}" if m.signal_groups is not None else ""
    return (f"reward {m.reward:.3f}  success {m.success:.0%}  turns {m.turns:.1f}  "
            f"loss {m.loss:+.3f}  env-fail {m.env_failures}  perturb {m.perturbations}{signal}"
            + (f"  wm-unparsed {m.wm_unparsed}" if m.wm_unparsed else ""))


def begin_run(recipe: Recipe, files: runs.RunFiles, *, started: bool, resume: bool,
              arm: str | None = None) -> RunSummary | None:
    """The start every trainer shares: refuse a started folder without ``resume``, or one started with a
    recipe that changes the run of ``arm`` (:func:`simrl.experiment.resume.check_resume`; None: every
    arm is compared), create the folder, return the summary of a run that already finished
    (``resume``), else write ``recipe.yaml`` and return None.

    Raises:
        SimrlError: ``started`` (the folder holds a run) and not ``resume``; or the folder's
            ``recipe.yaml`` differs from ``recipe`` in a field that decides the run (one line naming them).
    """
    from simrl.experiment.resume import check_resume

    if started and not resume:
        raise SimrlError(f"{files.root} already holds a run; pass --resume to continue it or choose another --out")
    if started:
        check_resume(files, recipe, arm, started=True)
    files.root.mkdir(parents=True, exist_ok=True)
    if resume and files.summary.exists():
        summary = RunSummary.model_validate_json(files.summary.read_text(encoding="utf-8"))
        if summary.steps == recipe.budget.steps:
            return summary  # finished already
    runs.write_atomic(files.recipe, recipe_yaml(recipe))
    return None


def finish_run(recipe: Recipe, arm: str, seed: int, files: runs.RunFiles, history: list[StepMetrics], *,
               resumed_from: int | None, warm_start: dict[str, float] | None,
               evaluation: dict[str, dict[str, float]] | None) -> RunSummary:
    """Build the run's :class:`RunSummary` from its step ``history`` and write ``summary.json`` atomically."""
    last = history[-5:]
    summary = RunSummary(
        recipe=recipe.name, arm=arm, seed=seed, run_dir=str(files.root), steps=len(history),
        resumed_from=resumed_from, episodes=sum(m.episodes for m in history),
        env_failures=sum(m.env_failures for m in history),
        first_reward=history[0].reward if history else math.nan,
        final_reward=statistics.fmean(m.reward for m in last) if last else math.nan,
        final_success=statistics.fmean(m.success for m in last) if last else math.nan,
        wall_s=history[-1].wall_s if history else 0.0, warm_start=warm_start, evaluation=evaluation)
    runs.write_atomic(files.summary, json.dumps(summary.model_dump(mode="json"), indent=2) + "\n")
    return summary
