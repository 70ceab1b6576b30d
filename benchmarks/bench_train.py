"""Cost of a training turn of the embedded trainer, split by part, against a base commit in the same run.

    python benchmarks/bench_train.py                       # this tree vs the base commit (default 46bd47a)
    python benchmarks/bench_train.py --base HEAD~1 --arm real --steps 4 16

Marginal CPU per environment turn: one arm x seed of ``recipes/quickstart.yaml`` (its policy, trainer, budget
per step) is trained for ``steps[0]`` and for ``steps[1]`` steps, each in a fresh process, evaluation off;
``(cpu[1] - cpu[0]) / (turns[1] - turns[0])`` leaves out start-up, world generation and the warm start. The base
commit is checked out into a temporary git worktree and measured the same way, in the same run (so both see the
same machine load). The split of this tree's turn (candidates, encoding, scoring and sampling, update; the rest
is the environment, the rollout loop and the step's bookkeeping) comes from timers wrapped around those functions
in two more runs, differenced the same way (the timers themselves cost a little). The held-out curve
(``evaluation.every``) is off in every timing. The two trees train with their own recipe's learner settings (at
the base commit: no kind-first exploration, episode credit), so their episodes differ; the figure compared is the
cost of one environment turn of training.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = r'''
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from simrl.experiment.recipe import load_recipe
from simrl.trainers.embedded import train_arm
steps, arm, out, split = int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), sys.argv[5] == "1"
timers = {}
if split:
    import functools
    from simrl.envs import base
    def timed(name, fn, is_async=False):
        if is_async:
            @functools.wraps(fn)
            async def wrapper(*a, **k):
                t = time.process_time()
                try:
                    return await fn(*a, **k)
                finally:
                    timers[name] = timers.get(name, 0.0) + time.process_time() - t
        else:
            @functools.wraps(fn)
            def wrapper(*a, **k):
                t = time.process_time()
                try:
                    return fn(*a, **k)
                finally:
                    timers[name] = timers.get(name, 0.0) + time.process_time() - t
        return wrapper
    import simrl.policies.decisions as dec, simrl.policies.features as feat, simrl.trainers.embedded as emb
    import simrl.policies.scorer as sc
    gen = "keyed_candidates" if hasattr(dec, "keyed_candidates") else "tagged_candidates"  # what decisions calls
    setattr(dec, gen, timed("candidates", getattr(dec, gen)))
    dec.state_text = timed("encoding", dec.state_text)
    dec.action_text = timed("encoding", dec.action_text)
    feat.Hasher.ids = timed("encoding", feat.Hasher.ids)
    sc.ScorerPolicy._flush = timed("scoring+sampling", sc.ScorerPolicy._flush)
    emb.grpo_update = timed("update", emb.grpo_update)
from simrl.experiment.recipe_training import Evaluation
extra = ["evaluation.every=null"] if "every" in Evaluation.model_fields else []  # no held-out curve in a timing
recipe = load_recipe(str(Path(sys.argv[1]) / "recipes/quickstart.yaml"), [f"budget.steps={steps}", "seeds=[0]", *extra])
cpu = time.process_time()
train_arm(recipe, arm, 0, out / "run", worlds=out / "worlds", run_eval=False)
cpu = time.process_time() - cpu
rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
turns = sum(r["turns"] * r["episodes"] for r in rows)
print(json.dumps({"cpu_s": cpu, "turns": turns, "episodes": sum(r["episodes"] for r in rows), "timers": timers}))
'''


def _run(tree: Path, steps: int, arm: str, split: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="simrl-bench-train-") as out:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        done = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(steps), arm, out, "1" if split else "0"],
                              capture_output=True, text=True, env=env, cwd=tree, check=False)
        if done.returncode != 0:
            raise SystemExit(f"training in {tree} failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def marginal(tree: Path, steps: tuple[int, int], arm: str) -> dict:
    """Marginal CPU ms per turn of ``tree``: the difference of two runs of ``steps[0]`` and ``steps[1]`` steps."""
    a, b = _run(tree, steps[0], arm, False), _run(tree, steps[1], arm, False)
    turns = b["turns"] - a["turns"]
    return {"ms_per_turn": 1000 * (b["cpu_s"] - a["cpu_s"]) / turns, "turns": turns,
            "episodes": b["episodes"] - a["episodes"], "ms_per_episode": 1000 * (b["cpu_s"] - a["cpu_s"]) / (b["episodes"] - a["episodes"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="46bd47a", help="commit to compare with (default: 46bd47a)")
    parser.add_argument("--arm", default="sim-controlled", help="arm of recipes/quickstart.yaml")
    parser.add_argument("--steps", type=int, nargs=2, default=(2, 10), help="the two run lengths (steps)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "arm": args.arm, "steps": list(args.steps),
               "load_at_start": round(load, 2), "cpus": os.cpu_count()}
    results["this_tree"] = marginal(ROOT, tuple(args.steps), args.arm)
    with tempfile.TemporaryDirectory(prefix="simrl-bench-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
                       check=True, capture_output=True)
        try:
            results["base"] = marginal(base, tuple(args.steps), args.arm) | {"commit": args.base}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False,
                           capture_output=True)
    short, long = _run(ROOT, args.steps[0], args.arm, True), _run(ROOT, args.steps[1], args.arm, True)
    turns = long["turns"] - short["turns"]
    split = {k: 1000 * (long["timers"].get(k, 0.0) - short["timers"].get(k, 0.0)) / turns for k in long["timers"]}
    split["environment, rollout loop and bookkeeping (the rest)"] = results["this_tree"]["ms_per_turn"] - sum(split.values())
    results["split_ms_per_turn"] = {k: round(v, 3) for k, v in sorted(split.items())}
    results["speedup"] = round(results["base"]["ms_per_turn"] / results["this_tree"]["ms_per_turn"], 2)
    results["load_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
