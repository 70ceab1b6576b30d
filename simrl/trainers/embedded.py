"""The embedded trainer: GRPO on CPU for one arm x seed of a recipe, one file read top to bottom.

In the spirit of cleanrl's ``ppo.py`` (docs/design.md §5). :func:`train_arm` does, in order:

1. the world: the recipe's training world, generated once under ``worlds`` (or a given world folder);
2. the arm's environment: real (``make(env, world=W, **recipe.real)``) or its world-model version
   (``make(env, world=W, world_model=backend, ...)``), wrapped in the arm's perturbation schedule whose
   curriculum is read at training progress ``(step - 1) / steps`` (ZeroSearch-style ramp; docs/design.md §4);
3. the policy: :class:`~simrl.policies.scorer.ScorerPolicy` (DRRN-style scorer; He et al., 2016), warm
   started by behaviour cloning on scripted-expert demonstrations collected in the REAL environment from
   episodes that met no edge case (:func:`warm_start`: the tools, never the recovery skills compared);
4. GRPO (Shao et al., 2024, DeepSeekMath §4.1): each step samples ``batch`` train tasks, runs
   ``group_size`` episodes of each, and takes one Adam step on
   ``loss = -(1/N) sum_i A_i sum_t log pi(a_it | s_it)`` over the N valid episodes, with the
   group-relative advantage ``A_i = (r_i - mean_group) / (std_group + 1e-6)`` (:func:`group_advantages`).
   Episodes whose status is ``env_failure`` carry no signal about the policy: they are excluded from
   their group and counted. No value network, no KL term, one update per batch (so no PPO ratio);
5. the run folder (:mod:`simrl.experiment.runs`): metrics per step, a sample of trajectories, checkpoints
   (policy + optimizer + RNG states, atomic) every ``checkpoint_every`` steps and at the end, resume,
   ``final.pt``, ``summary.json``, and the held-out evaluation in the real environment
   (:func:`simrl.experiment.evaluate.evaluate_policy`).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.experiment import locks, runs
from simrl.experiment.evaluate import evaluate_heldout
from simrl.experiment.recipe import Recipe
from simrl.rollout import rollout
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


def group_advantages(rewards: list[float], valid: list[bool]) -> list[float]:
    """GRPO's group-relative advantages (Shao et al., 2024): ``(r - mean) / (std + 1e-6)`` over the valid episodes.

    ``std`` is the sample standard deviation (n - 1), as in trl's and verl's GRPO. Invalid episodes
    (environment failures) get 0 and do not enter the mean or std; a group with fewer than two valid
    episodes, or with equal rewards, gives every episode 0 (nothing to compare).

    >>> [round(a, 4) for a in group_advantages([1.0, 0.0, 1.0, 0.0], [True] * 4)]  # mean .5, std sqrt(1/3)
    [0.866, -0.866, 0.866, -0.866]
    >>> [round(a, 3) for a in group_advantages([1.0, 0.0, 0.0, 5.0], [True, True, True, False])]  # 5.0 failed
    [1.155, -0.577, -0.577, 0.0]
    >>> group_advantages([1.0, 1.0, 1.0], [True] * 3)
    [0.0, 0.0, 0.0]
    """
    kept = [r for r, ok in zip(rewards, valid) if ok]
    if len(kept) < 2 or max(kept) == min(kept):
        return [0.0] * len(rewards)
    mean, std = statistics.fmean(kept), statistics.stdev(kept)
    return [(r - mean) / (std + 1e-6) if ok else 0.0 for r, ok in zip(rewards, valid)]


def grpo_update(policy: Any, optimizer: Any, trajs: list, advantages: list[float], views: dict[str, dict],
                *, grad_clip: float, entropy_coef: float = 0.0) -> tuple[float, float, float | None]:
    """One Adam step on the GRPO loss of ``trajs`` (the env failures already have advantage 0).

    ``loss = -(1/N) sum_i A_i sum_t logp_it`` over the N valid episodes, actions outside the candidates
    masked out; with ``entropy_coef`` > 0 it adds ``entropy_coef * (1/N) sum_i sum_t logp_it.detach() * logp_it``,
    whose gradient is the sampled estimate of ``-entropy_coef * grad H`` (an entropy bonus).

    Returns:
        ``(loss, grad norm before clipping, share of actions that were candidates)``; no step is taken
        (and ``(0, 0, coverage)`` returned) when no episode has a nonzero advantage.
    """
    import torch

    valid = [i for i, t in enumerate(trajs) if t.status != "env_failure"]
    terms, covered, actions = [], 0, 0
    for i in valid:
        if advantages[i] == 0.0 and entropy_coef == 0.0:
            continue  # no gradient to take: skip the forward pass
        logp, mask = policy.log_probs(trajs[i], views[trajs[i].task_id])
        logp = logp * mask
        covered, actions = covered + int(mask.sum()), actions + mask.numel()
        term = -advantages[i] * logp.sum()
        if entropy_coef:
            term = term + entropy_coef * (logp.detach() * logp).sum()
        terms.append(term)
    coverage = covered / actions if actions else None
    if not terms or not any(t.requires_grad for t in terms):
        return 0.0, 0.0, coverage
    loss = torch.stack(terms).sum() / len(valid)
    optimizer.zero_grad()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(policy.module.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach()), float(norm), coverage


async def warm_start(recipe: Recipe, policy: Any, world: Path, tasks: list, seed: int) -> dict[str, float] | None:
    """Behaviour cloning on ``recipe.warm_start.demos`` scripted-expert episodes in the REAL environment.

    The expert runs once on every train task; only successful episodes that met no edge case
    (:func:`simrl.experiment.evaluate.edge_cases`: no next page, no fault) may be demonstrations, chosen in turn
    from each task template (a seeded shuffle within each), so the warm start teaches the tools but never
    paging or recovery. Returns behaviour_cloning's metrics plus what the warm start saw (``demos``,
    ``expert_episodes``, ``clean_episodes``, ``demo_turns``, ``demos/<template>``), or None without one.
    """
    from simrl.experiment.evaluate import edge_cases
    from simrl.policies import make_policy
    from simrl.policies.scorer import behaviour_cloning

    ws = recipe.warm_start
    if ws is None or ws.demos == 0:
        return None
    expert = make_policy("expert", recipe.env.id, world, tasks)
    trajs = await rollout(runs.real_env_factory(recipe, world), expert, tasks, max_turns=recipe.budget.max_turns,
                          concurrency=recipe.trainer.concurrency, seed=seed * 1_000_003 + 999_999)
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


def _adam(params: Any, lr: float) -> Any:
    """Adam, with the fused CPU kernel where this torch build has it (much faster on the embedding tables)."""
    import torch

    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


async def _train(recipe: Recipe, arm_name: str, seed: int, files: runs.RunFiles, world: Path, resume: bool,
                 report: Progress, tracker: Any) -> tuple[Any, int | None, dict | None, list[StepMetrics]]:
    import torch

    from simrl.experiment.tracking import step_metrics
    from simrl.policies.scorer import ScorerPolicy

    arm, budget, tc = recipe.arm(arm_name), recipe.budget, recipe.trainer
    tasks = runs.world_tasks(recipe, world, "train")
    views = {t.task_id: t.policy_view() for t in tasks}
    torch.manual_seed(seed)
    rng = random.Random(f"simrl-train-{seed}")  # task sampling; never the global generator
    policy = ScorerPolicy(dim=recipe.policy.dim, buckets=recipe.policy.buckets, seed=seed,
                          temperature=recipe.policy.temperature, greedy=False)
    optimizer = _adam(policy.module.parameters(), tc.lr)
    start, wall0, ws_stats = 0, 0.0, None
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
    else:
        runs.rewind_logs(files, None)
        report(0, budget.steps, "warm start: expert demonstrations in the real environment")
        ws_stats = await warm_start(recipe, policy, world, tasks, seed)
        if ws_stats is not None:
            policy.save(files.warmstart)
    history = read_history(files)
    if ckpt is None and ws_stats is not None:
        tracker.log(step_metrics(ws_stats, "warm_start/"), 0)
    report(start, budget.steps, f"step {start}/{budget.steps}")
    t0 = time.perf_counter()
    for step in range(start + 1, budget.steps + 1):
        progress = (step - 1) / budget.steps
        chosen = (rng.sample(tasks, budget.batch) if budget.batch <= len(tasks)
                  else rng.choices(tasks, k=budget.batch))
        episodes = [t for t in chosen for _ in range(budget.group_size)]
        make_env = runs.arm_env_factory(recipe, arm, world, progress=progress, seed=seed)
        base = seed * 1_000_003 + (step - 1) * len(episodes)  # distinct episode seeds across steps
        trajs = await rollout(make_env, policy, episodes, max_turns=budget.max_turns,
                              concurrency=tc.concurrency, seed=base)
        advantages: list[float] = []
        for g in range(0, len(trajs), budget.group_size):
            group = trajs[g:g + budget.group_size]
            advantages += group_advantages([t.reward for t in group], [t.status != "env_failure" for t in group])
        loss, norm, coverage = grpo_update(policy, optimizer, trajs, advantages, views, grad_clip=tc.grad_clip,
                                           entropy_coef=tc.entropy_coef)
        m = measure_step(step, progress, trajs, loss, norm, coverage, wall0 + time.perf_counter() - t0,
                          group_size=budget.group_size)
        history.append(m)
        stride = max(1, len(trajs) // max(1, tc.trajectories_per_step))
        for traj, adv in list(zip(trajs, advantages))[::stride][:tc.trajectories_per_step]:
            traj.info.update(train_step=step, advantage=adv)
            _append(files.trajectories, traj.model_dump_json())
        _append(files.metrics, m.model_dump_json())  # after the trajectories: a logged step is complete
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
        policy, resumed, ws_stats, history = asyncio.run(_train(recipe, arm, seed, files, world, resume, report,
                                                                tracker))
        policy.save(files.final)
        evaluation = None
        if run_eval:
            report(recipe.budget.steps, recipe.budget.steps, "evaluating on held-out real tasks")
            evaluation = evaluate_heldout(recipe, policy, files, world, worlds, seed)
            tracker.log(eval_metrics(evaluation), recipe.budget.steps)
    finally:
        tracker.close()
        torch.set_num_threads(threads)
    return finish_run(recipe, arm, seed, files, history, resumed_from=resumed, warm_start=ws_stats,
                      evaluation=evaluation)


