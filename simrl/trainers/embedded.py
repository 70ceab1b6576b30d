"""The embedded trainer: GRPO on CPU for one arm x seed of a recipe, one file read top to bottom.

In the spirit of cleanrl's ``ppo.py`` (docs/design.md §5). :func:`train_arm` does, in order:

1. the world: the recipe's training world, generated once under ``worlds`` (or a given world folder);
2. the arm's environment: real (``make(env, world=W, **recipe.real)``) or its world-model version
   (``make(env, world=W, world_model=backend, ...)``), wrapped in the arm's perturbation schedule whose
   curriculum is read at training progress ``(step - 1) / steps`` (ZeroSearch-style ramp; docs/design.md §4);
3. the policy: :class:`~simrl.policies.scorer.ScorerPolicy` (DRRN-style scorer; He et al., 2016), warm
   started by behaviour cloning on scripted-expert demonstrations collected in the REAL environment from
   episodes that met no edge case (:func:`simrl.trainers.warm_start.warm_start`: the tools, never the recovery
   skills compared); each step's tasks drawn from :func:`~simrl.trainers.warm_start.training_pool`;
4. GRPO (Shao et al., 2024, DeepSeekMath §4.1): each step samples ``batch`` train tasks, runs
   ``group_size`` episodes of each (actions drawn kind first with probability ``policy.explore_kinds``), and
   takes one Adam step (the embedding tables row by row, the same numbers: :mod:`simrl.policies.sparse_rows`)
   on ``loss = -(1/N) sum_i sum_t A_it log pi(a_it | s_it)`` over the N valid episodes, with the
   group-relative advantage ``A_i = (r_i - mean_group) / (std_group + 1e-6)`` on every turn
   (``trainer.credit: episode``) plus, for ``gigpo``, GiGPO's step-level advantage over the turns that acted
   from the same state (:mod:`simrl.trainers.credit`). Episodes whose status is ``env_failure`` carry no
   signal about the policy: they are excluded from their group and counted. With ``trainer.kl_coef`` > 0 the
   loss adds GRPO's KL penalty towards the warm start (exact over the candidates, :func:`grpo_update`). No value
   network, one update per batch (so no PPO ratio); every turn of the step is scored in one forward pass;
5. the run folder (:mod:`simrl.experiment.runs`): metrics per step (skill rates and diagnostics included), a
   held-out curve every ``evaluation.every`` steps (``curve.jsonl``), a sample of trajectories, checkpoints
   (policy + optimizer + RNG states, atomic) every ``checkpoint_every`` steps and at the end, resume,
   ``final.pt``, ``summary.json``, and the held-out evaluation in the real environment
   (:func:`simrl.evaluation.evaluate.evaluate_policy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.experiment import locks, runs
from simrl.experiment.heldout import evaluate_heldout
from simrl.experiment.recipe import Recipe
from simrl.rollout import rollout
from simrl.trainers.credit import group_advantages, step_advantages, turn_advantages
from simrl.trainers.lifecycle import (
    Progress,
    RunSummary,
    StepMetrics,
    begin_run,
    finish_run,
    format_metrics,
    measure_step,
    read_history,
)
from simrl.trainers.warm_start import ExpertEpisodes, training_pool, warm_start


def grpo_update(policy: Any, optimizer: Any, trajs: list, advantages: list[list[float]], decisions: list[list],
                *, grad_clip: float, entropy_coef: float = 0.0, reference: Any = None,
                kl_coef: float = 0.0) -> dict[str, float | None]:
    """One Adam step on the policy-gradient loss of ``trajs``, every turn scored in one forward pass.

    ``loss = -(1/N) sum_i sum_t A_it logp_it`` over the N valid episodes (``advantages[i][t]``: the turn's
    advantage, :mod:`simrl.trainers.credit`), actions outside the candidates masked out; with ``entropy_coef``
    > 0 it adds ``entropy_coef * (1/N) sum_i sum_t logp_it.detach() * logp_it``, whose gradient is the sampled
    estimate of ``-entropy_coef * grad H`` (an entropy bonus); with ``kl_coef`` > 0 (and a ``reference``) it adds
    ``kl_coef * (1/N) sum_i sum_t KL(pi(.|s_it) || pi_ref(.|s_it))``, the exact KL over the candidates at each
    visited decision point: GRPO's penalty towards the reference policy (Shao et al., 2024, DeepSeekMath, eq. 3,
    there estimated from samples; here the candidate distributions are explicit). The log-probabilities are those of the
    sampling policy (:meth:`simrl.policies.scorer.ScorerPolicy.log_mix`), taken at decision points that were
    encoded while acting (:attr:`~simrl.policies.scorer.ScorerPolicy.decisions`).

    Args:
        decisions: per episode, the decision point of each turn (:meth:`ScorerPolicy.decisions_of`).
        reference: a policy to measure ``kl_warm_start`` against (the warm start), or None.
        kl_coef: weight of the KL penalty towards ``reference`` (0: a diagnostic only).

    Returns:
        ``loss``, ``grad_norm`` (before clipping; 0 without a step), ``coverage`` (share of the updated turns'
        actions that were candidates; None without any), ``entropy`` and ``kl_warm_start`` (nats, mean over the
        step's decision points, every valid episode's; None without any). No step is taken when no turn has a
        nonzero advantage (and no entropy bonus or KL penalty).
    """
    import torch

    from simrl.policies.sparse_rows import RowGrads, RowSparseAdam, clip_grad_norm_

    out: dict[str, float | None] = {"loss": 0.0, "grad_norm": 0.0, "coverage": None, "entropy": None,
                                    "kl_warm_start": None}
    valid = [i for i, t in enumerate(trajs) if t.status != "env_failure"]
    points, actions, weights = [], [], []
    for i in valid:  # every valid episode's turns: the diagnostics cover them all; zero weights add no gradient
        points += decisions[i]
        actions += [turn.action for turn in trajs[i].turns]
        weights += advantages[i]
    if not points:
        return out
    rows = RowGrads(optimizer) if isinstance(optimizer, RowSparseAdam) else None  # tables' gradients by rows
    batch = policy.batch(points)  # the inputs, packed once for the policy and its reference
    logp, mask, full = policy.decision_log_probs(points, actions, full=True, rows=rows, batch=batch)
    out["coverage"] = float(mask.float().mean())
    with torch.no_grad():
        probs = full.exp()
        plogp = torch.where(probs > 0, probs * full, torch.zeros_like(full))
        out["entropy"] = float(-plogp.sum(1).mean())
        ref = None if reference is None else reference.decision_log_probs(points, actions, full=True, batch=batch)[2]
    if ref is not None:  # KL(pi || pi_ref) per decision point; padding (-inf in both) contributes 0
        kl = (full.exp() * torch.where(probs > 0, full - ref, torch.zeros_like(full))).sum(1)    # [N]
        out["kl_warm_start"] = float(kl.detach().mean())
    loss = -(torch.tensor(weights) * logp).sum()
    if entropy_coef:
        loss = loss + entropy_coef * (logp.detach() * logp).sum()
    penalise = bool(kl_coef) and ref is not None
    if penalise:
        loss = loss + kl_coef * kl.sum()
    loss = loss / len(valid)
    if not (entropy_coef or penalise or any(weights)) or not loss.requires_grad:
        return out
    optimizer.zero_grad()
    loss.backward()
    if rows is not None:
        rows.into()
    norm = clip_grad_norm_(policy.module.parameters(), grad_clip, optimizer if rows is not None else None)
    optimizer.step()
    out["loss"], out["grad_norm"] = float(loss.detach()), float(norm)
    return out


def advantages_of(recipe: Recipe, trajs: list, decisions: list[list]) -> list[list[float]]:
    """Per episode and turn, the advantage ``recipe.trainer.credit`` gives (:mod:`simrl.trainers.credit`).

    Groups are consecutive ``budget.group_size`` episodes (one task each). ``episode``: GRPO's
    group-relative advantage on every turn; ``gigpo``: plus ``trainer.step_weight`` times GiGPO's
    step-level advantage, anchor states being the keys of ``decisions`` (per episode, each turn's decision point).
    """
    tc, size = recipe.trainer, recipe.budget.group_size
    out: list[list[float]] = []
    for g in range(0, len(trajs), size):
        group, points = trajs[g:g + size], decisions[g:g + size]
        valid = [t.status != "env_failure" for t in group]
        episode = group_advantages([t.reward for t in group], valid)
        step = None
        if tc.credit == "gigpo":
            keys = [[d.key for d in episode_points] for episode_points in points]
            rewards = [[turn.step.reward for turn in t.turns] for t in group]
            step = step_advantages(keys, rewards, valid, tc.gamma)
        out += turn_advantages(episode, step, [len(t.turns) for t in group], tc.step_weight)
    return out


@contextlib.contextmanager
def fewer_collections(young: int = 100_000) -> Iterator[None]:
    """Python's cyclic garbage collector run less often inside the block (a speed setting: nothing computed changes).

    A training step allocates hundreds of thousands of small objects (candidates, token ids, trajectories); at the
    default thresholds (700, 10, 10) that triggers a young collection every 700 allocations and, often, a full one
    that walks every object alive (torch, the world, the policy): a tenth of a training turn. Here what exists on
    entry is frozen (:func:`gc.freeze`: collections skip it; unfrozen on exit) and a young collection runs every
    ``young`` allocations; cycles made inside the block are still collected. The previous thresholds come back on
    exit.

    ``young`` is 100,000 rather than 20,000: a step keeps its episodes (trajectories, decision points) alive until
    its update, so a young collection inside a step walked them and promoted them, and every tenth one walked them
    again in the middle generation (one such collection cost about 70 ms, in 40 steps of a quickstart run: 5% of
    its training CPU); at 100,000 most of a step's objects are gone before a collection looks at them.
    """
    import gc

    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(young, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


def load_policy(recipe: Recipe, checkpoint: Path | None, *, seed: int = 0) -> Any:
    """The trainer registry's ``load_policy`` hook: the scorer policy saved at ``checkpoint`` (a run's ``final.pt``,
    ``warmstart.pt`` or ``checkpoints/step-N.pt``), or with None the untrained one of ``seed`` (``recipe.policy``;
    its weights come from ``seed`` alone): the policy a run starts from before any warm start.

    Raises:
        SimrlError: ``checkpoint`` is not a scorer checkpoint (:meth:`~simrl.policies.scorer.ScorerPolicy.load`).
    """
    from simrl.policies.scorer import ScorerPolicy

    if checkpoint is not None:
        return ScorerPolicy.load(checkpoint)
    p = recipe.policy
    return ScorerPolicy(dim=p.dim, buckets=p.buckets, seed=seed, temperature=p.temperature, greedy=False,
                        init_scale=p.init_scale)


def _policy(recipe: Recipe, seed: int) -> Any:
    from simrl.policies.scorer import ScorerPolicy

    p = recipe.policy
    return ScorerPolicy(dim=p.dim, buckets=p.buckets, seed=seed, temperature=p.temperature, greedy=False,
                        explore_kinds=p.explore_kinds, init_scale=p.init_scale)


async def _step(recipe: Recipe, arm_name: str, seed: int, step: int, policy: Any, optimizer: Any, tasks: list,
                views: dict[str, dict], world: Path, rng: random.Random, reference: Any) -> tuple[list, list, dict]:
    """One training step: sample tasks, run their groups, credit the turns, update. Returns
    ``(trajectories, per-turn advantages, update diagnostics + timings)``."""
    budget, tc = recipe.budget, recipe.trainer
    progress = (step - 1) / budget.steps
    chosen = rng.sample(tasks, budget.batch) if budget.batch <= len(tasks) else rng.choices(tasks, k=budget.batch)
    episodes = [t for t in chosen for _ in range(budget.group_size)]
    make_env = runs.arm_env_factory(recipe, recipe.arm(arm_name), world, progress=progress, seed=seed)
    base = seed * 1_000_003 + (step - 1) * len(episodes)  # distinct episode seeds across steps
    t0 = time.perf_counter()
    trajs = await rollout(make_env, policy, episodes, max_turns=budget.max_turns, concurrency=tc.concurrency,
                          seed=base)
    t1 = time.perf_counter()
    decisions = [policy.decisions_of(t, views[t.task_id]) for t in trajs]  # once: credit and update share them
    advantages = advantages_of(recipe, trajs, decisions)
    update = grpo_update(policy, optimizer, trajs, advantages, decisions, grad_clip=tc.grad_clip,
                         entropy_coef=tc.entropy_coef, reference=reference, kl_coef=tc.kl_coef)
    policy.decisions.end_step()  # the step's episodes are let go; their decisions kept for later steps (bounded)
    update |= {"rollout_s": t1 - t0, "update_s": time.perf_counter() - t1, "lr": tc.lr}
    return trajs, advantages, update


def _diagnostics(trajs: list, advantages: list[list[float]], group_size: int) -> dict[str, float | None]:
    """Reward spread within groups and the share of valid episodes whose turns all got advantage 0."""
    valid = [i for i, t in enumerate(trajs) if t.status != "env_failure"]
    spreads = []
    for g in range(0, len(trajs), group_size):
        rewards = [t.reward for t in trajs[g:g + group_size] if t.status != "env_failure"]
        if len(rewards) > 1:
            spreads.append(statistics.stdev(rewards))
    return {"reward_std": statistics.fmean(spreads) if spreads else None,
            "zero_advantage": (sum(not any(advantages[i]) for i in valid) / len(valid)) if valid else None}


async def _train(recipe: Recipe, arm_name: str, seed: int, files: runs.RunFiles, world: Path, resume: bool,
                 report: Progress, tracker: Any, worlds: Path) -> tuple[Any, int | None, dict | None, list[StepMetrics]]:
    import torch

    from simrl.experiment.heldout import CURVE, curve_point, evaluation_sets
    from simrl.experiment.skills import skill_rates
    from simrl.experiment.tracking import step_metrics
    from simrl.policies.scorer import ScorerPolicy
    from simrl.policies.sparse_rows import make_adam

    budget, tc = recipe.budget, recipe.trainer
    tasks = runs.world_tasks(recipe, world, "train")
    views = {t.task_id: t.policy_view() for t in tasks}
    torch.manual_seed(seed)
    rng = random.Random(f"simrl-train-{seed}")  # task sampling; never the global generator
    policy = _policy(recipe, seed)
    optimizer = make_adam(policy.module.parameters(), tc.lr, policy.tables)
    start, wall0, ws_stats = 0, 0.0, None
    expert = ExpertEpisodes(recipe, world, tasks, seed)  # one expert run for the warm start and the task pool
    ckpt = runs.latest_checkpoint(files) if resume else None
    tracker.start(ckpt[0] + 1 if ckpt is not None else 1)  # fails fast (a tracker that cannot start)
    if ckpt is not None:  # resume: restore, then forget logged steps after the checkpoint
        start, state = ckpt
        if start > budget.steps:
            raise SimrlError(f"{files.root} was checkpointed at step {start}, past budget.steps {budget.steps}; "
                             "raise budget.steps or start a new run")
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        rng.setstate(state["rng_python"])
        torch.set_rng_state(state["rng_torch"])
        wall0, ws_stats = float(state["wall_s"]), state.get("warm_start")
        runs.rewind_logs(files, start)
        runs.truncate_jsonl(files.root / CURVE, lambda row: int(row.get("step", 0)) <= start)
    else:
        runs.rewind_logs(files, None)
        (files.root / CURVE).unlink(missing_ok=True)
        report(0, budget.steps, "warm start: expert demonstrations in the real environment")
        ws_stats = await warm_start(recipe, policy, world, tasks, seed, expert)
        if ws_stats is not None:
            policy.save(files.warmstart)
    pool, pool_stats = await training_pool(recipe, world, tasks, seed, expert)  # again on resume: the same pool
    if pool_stats:
        report(start, budget.steps, f"task pool: {len(pool)} entries for {len(tasks)} train tasks ("
               + ", ".join(f"{int(pool_stats['pool/' + k])} {k} x{w}" for k, w in budget.task_weights.items()) + ")")
    reference = ScorerPolicy.load(files.warmstart) if files.warmstart.is_file() else None
    if reference is not None:
        reference.explore_kinds = policy.explore_kinds  # the KL compares the sampling distributions
    history = read_history(files)
    if ckpt is None and ws_stats is not None:
        tracker.log(step_metrics(ws_stats, "warm_start/"), 0)
    if ckpt is None and pool_stats:
        tracker.log(step_metrics(pool_stats, "tasks/"), 0)
    report(start, budget.steps, f"step {start}/{budget.steps}")
    t0 = time.perf_counter()
    every, sets = recipe.evaluation.every, []
    if every:
        try:
            sets = await asyncio.to_thread(evaluation_sets, recipe, world, worlds)
        except SimrlError as err:  # the curve describes training; a run without an evaluation set still trains
            every = None
            report(start, budget.steps, f"no held-out curve (evaluation.every): {err}")
    if every and ckpt is None:
        point = await curve_point(recipe, policy, sets, 0)
        _append(files.root / CURVE, json.dumps(point))
    for step in range(start + 1, budget.steps + 1):
        trajs, advantages, update = await _step(recipe, arm_name, seed, step, policy, optimizer, pool, views,
                                                world, rng, reference)
        m = measure_step(step, (step - 1) / budget.steps, trajs, update["loss"], update["grad_norm"],
                         update["coverage"], wall0 + time.perf_counter() - t0, group_size=budget.group_size)
        m = m.model_copy(update={k: v for k, v in update.items() if k in StepMetrics.model_fields}
                         | _diagnostics(trajs, advantages, budget.group_size) | {"skills": skill_rates(trajs)})
        history.append(m)
        stride = max(1, len(trajs) // max(1, tc.trajectories_per_step))
        for traj, adv in list(zip(trajs, advantages))[::stride][:tc.trajectories_per_step]:
            traj.info.update(train_step=step, advantage=statistics.fmean(adv) if adv else 0.0, turn_advantages=adv)
            _append(files.trajectories, traj.model_dump_json())
        if every and step % every == 0:
            point = await curve_point(recipe, policy, sets, step)
            _append(files.root / CURVE, json.dumps(point))
            tracker.log(step_metrics(point, "heldout/"), step)
        _append(files.metrics, m.model_dump_json())  # after the trajectories and curve: a logged step is complete
        tracker.log(step_metrics(m.model_dump()), step)  # a copy for the trackers; metrics.jsonl is the record
        if step % tc.checkpoint_every == 0 or step == budget.steps:
            runs.save_checkpoint(files, step, {
                "policy": policy.state_dict(), "optimizer": optimizer.state_dict(),
                "rng_python": rng.getstate(), "rng_torch": torch.get_rng_state(), "wall_s": m.wall_s,
                "warm_start": ws_stats, "arm": arm_name, "seed": seed}, keep=tc.keep_checkpoints)
        report(step, budget.steps, format_metrics(m))
    return policy, (start if ckpt is not None else None), ws_stats, history


def train_arm(recipe: Recipe, arm: str, seed: int, out_dir: str | Path, *, resume: bool = False,
              progress: Progress | None = None, worlds: str | Path | None = None,
              run_eval: bool = True) -> RunSummary:
    """Train one arm x seed of ``recipe`` with the embedded GRPO trainer; returns (and writes) its summary.

    Args:
        recipe: a loaded recipe (:func:`simrl.experiment.recipe.load_recipe`).
        arm: an arm name of ``recipe.all_arms()`` (grid arms included).
        seed: the training seed (policy init, task sampling, episode seeds).
        out_dir: the run folder (:func:`simrl.experiment.runs.run_dir` gives the standard one).
        resume: continue from the newest checkpoint in ``out_dir`` (a fresh start if there is none).
        progress: ``progress(steps_done, steps_total, message)`` as the run advances.
        worlds: where worlds are generated and shared (default: ``out_dir/worlds``).
        run_eval: evaluate the final policy on held-out real tasks (:func:`evaluate`).

    Raises:
        SimrlError: trainer kind other than ``embedded``; an unknown arm; ``out_dir`` already holds a run
            and ``resume`` is False, or another process writes it (:mod:`simrl.experiment.locks`); a world
            without train tasks.
    """
    if recipe.trainer.kind != "embedded":
        raise SimrlError(f"the embedded trainer trains the scorer policy; recipe trainer.kind is "
                         f"{recipe.trainer.kind!r} (run it with `simrl train`, which picks the trainer)")
    recipe.arm(arm)
    files = runs.RunFiles(Path(out_dir))
    with locks.writing_run(files.root):  # one writer per run folder; its temporary files under it
        return _train_arm(recipe, arm, seed, files, resume=resume, progress=progress, worlds=worlds,
                          run_eval=run_eval)


def _train_arm(recipe: Recipe, arm: str, seed: int, files: runs.RunFiles, *, resume: bool,
               progress: Progress | None, worlds: str | Path | None, run_eval: bool) -> RunSummary:
    import torch

    from simrl.experiment.tracking import Tracker, eval_metrics, run_tracking

    finished = begin_run(recipe, files, started=files.started(), resume=resume, arm=arm)
    if finished is not None:
        return finished
    worlds = Path(worlds) if worlds is not None else files.root / "worlds"
    report = progress or (lambda done, total, message: None)
    world = runs.training_world(recipe, worlds)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the policy's ops are tiny: more threads only contend (100x slower on a busy CPU)
    tracker = Tracker(run_tracking(recipe, arm, seed, files.root.parent.parent))  # OUT of OUT/<arm>/seed-<S>
    try:
        with fewer_collections():
            policy, resumed, ws_stats, history = asyncio.run(_train(recipe, arm, seed, files, world, resume, report,
                                                                    tracker, worlds))
        policy.save(files.final)
        evaluation = None
        if run_eval:
            report(recipe.budget.steps, recipe.budget.steps, "evaluating on held-out real tasks")
            evaluation = evaluate_heldout(recipe, policy, files, world, worlds)
            tracker.log(eval_metrics(evaluation), recipe.budget.steps)
    finally:
        tracker.close()
        torch.set_num_threads(threads)
    return finish_run(recipe, arm, seed, files, history, resumed_from=resumed, warm_start=ws_stats,
                      evaluation=evaluation)


