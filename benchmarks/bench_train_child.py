"""One timed training run for ``bench_train.py``, importing simrl from whichever tree is on ``PYTHONPATH``.

    PYTHONPATH=TREE python benchmarks/bench_train_child.py TREE STEPS ARM OUT [--split]

Trains seed 0 of ``ARM`` of ``TREE/recipes/quickstart.yaml`` for ``STEPS`` steps (evaluation off, the held-out
curve off where the tree has one) and prints one JSON line: ``cpu_s`` (the whole ``train_arm`` call:
``time.process_time`` seconds), ``marks`` (one ``[step, cpu_s, checkpoint_cpu_s, timers]`` per progress report:
the trainer reports each step done, after its logs and checkpoint), and ``rows`` (``[step, turns, episodes]``
per step, from ``metrics.jsonl``). ``bench_train.in_steps`` turns these into the CPU inside a window of steps.

Only what every tree since 46bd47a shares is used: ``train_arm(..., progress=, run_eval=)``, its progress
callback, ``simrl.experiment.runs.save_checkpoint`` (wrapped to time the checkpoints, which are left out of a
step's cost), ``rollout`` as imported by ``simrl.trainers.embedded`` (wrapped with ``--split`` to time the
environments' make/reset/step/close). ``--split`` also times the policy's parts (candidates, encoding, scoring
and sampling, update) by wrapping those functions, under whichever name the tree has.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import types
from pathlib import Path

TIMERS: dict[str, float] = {}
CHECKPOINT = [0.0]
OPEN: list[str] = []  # the timed regions running now, innermost last


def timed(name: str, fn):
    """``fn`` (sync) with its CPU seconds added to ``TIMERS[name]``, less any timed region nested in it."""
    @functools.wraps(fn)
    def wrapper(*a, **k):
        if OPEN and OPEN[-1] == name:  # a recursive or same-part call: counted once, by the outer call
            return fn(*a, **k)
        OPEN.append(name)
        t, inner = time.process_time(), sum(TIMERS.values())
        try:
            return fn(*a, **k)
        finally:
            OPEN.pop()
            nested = sum(TIMERS.values()) - inner
            TIMERS[name] = TIMERS.get(name, 0.0) + time.process_time() - t - nested
    return wrapper


def timed_async(name: str, fn):
    """``fn`` (a coroutine function) timed like :func:`timed`, counting only the CPU of its own stretches between
    suspensions (while it waits, other episodes' coroutines run and are not its cost)."""
    @functools.wraps(fn)
    def wrapper(*a, **k):
        return _drive(name, fn(*a, **k))
    return wrapper


@types.coroutine
def _drive(name: str, coro):
    """Run ``coro`` as ``await`` would, timing each ``send``/``throw`` into it (see :func:`timed_async`)."""
    value, error = None, None
    while True:
        OPEN.append(name)
        t, inner = time.process_time(), sum(TIMERS.values())
        try:
            waiting = coro.throw(error) if error is not None else coro.send(value)
        except StopIteration as done:
            return done.value
        finally:
            OPEN.pop()
            spent = time.process_time() - t - (sum(TIMERS.values()) - inner)
            TIMERS[name] = TIMERS.get(name, 0.0) + spent
        try:
            value, error = (yield waiting), None
        except BaseException as exc:  # noqa: BLE001 - passed into the coroutine, as await does
            value, error = None, exc


def _split() -> None:
    """Wrap the policy's parts and the environments (see the module docstring)."""
    import simrl.trainers.embedded as emb

    _split_environment(emb)
    try:
        import simrl.policies.decisions as dec
    except ImportError:  # a tree before the decisions module (46bd47a): the environment's share only
        return
    import simrl.policies.features as feat
    import simrl.policies.scorer as sc

    gen = "keyed_candidates" if hasattr(dec, "keyed_candidates") else "tagged_candidates"  # what decisions calls
    setattr(dec, gen, timed("candidates", getattr(dec, gen)))
    dec.state_text = timed("encoding", dec.state_text)
    dec.action_text = timed("encoding", dec.action_text)
    feat.Hasher.ids = timed("encoding", feat.Hasher.ids)
    sc.ScorerPolicy._flush = timed("scoring+sampling", sc.ScorerPolicy._flush)
    emb.grpo_update = timed("update", emb.grpo_update)


def _split_environment(emb) -> None:
    """Time making each episode's environment and its ``reset``, ``step`` and ``close`` calls."""
    rollout = emb.rollout

    async def timed_rollout(make_env, *a, **k):
        def make():
            env = timed("environment", make_env)()
            for method in ("reset", "step", "close"):
                setattr(env, method, timed_async("environment", getattr(env, method)))
            return env
        return await rollout(make, *a, **k)

    emb.rollout = timed_rollout


def main() -> None:
    tree, steps, arm, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    sys.path.insert(0, str(tree))
    from simrl.experiment import runs
    from simrl.experiment.recipe import load_recipe
    from simrl.experiment.recipe_training import Evaluation
    from simrl.trainers.embedded import train_arm

    if "--split" in sys.argv[5:]:
        _split()
    save = runs.save_checkpoint

    def save_checkpoint(*a, **k):
        t = time.process_time()
        try:
            return save(*a, **k)
        finally:
            CHECKPOINT[0] += time.process_time() - t

    runs.save_checkpoint = save_checkpoint
    marks: list[list] = []

    def progress(done: int, total: int, message: str) -> None:
        marks.append([done, time.process_time(), CHECKPOINT[0], dict(TIMERS)])

    extra = ["evaluation.every=null"] if "every" in Evaluation.model_fields else []  # no held-out curve here
    recipe = load_recipe(str(tree / "recipes/quickstart.yaml"), [f"budget.steps={steps}", "seeds=[0]", *extra])
    cpu = time.process_time()
    train_arm(recipe, arm, 0, out / "run", worlds=out / "worlds", run_eval=False, progress=progress)
    cpu = time.process_time() - cpu
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [[r["step"], round(r["turns"] * r["episodes"]), r["episodes"]] for r in rows]
    print(json.dumps({"cpu_s": cpu, "marks": marks, "rows": rows}))


if __name__ == "__main__":
    main()
