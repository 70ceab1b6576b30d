"""Cost of a training turn of the embedded trainer, against a base commit measured in the same run.

    python benchmarks/bench_train.py              # this tree vs 46bd47a: sim-controlled, then real; steps 3-42, x3
    python benchmarks/bench_train.py --arm real --base HEAD~1 --steps 2 20 --repeats 5

Primary measure: CPU inside the training steps. Each arm x seed 0 of ``recipes/quickstart.yaml`` (each tree its
own recipe: policy, trainer, budget per step; evaluation and the held-out curve off) is trained for ``LONG``
steps in a fresh process (``bench_train_child.py``, run with the tree on ``PYTHONPATH``); the trainer's progress
callback, which every tree since 46bd47a calls once a step is done (its logs and checkpoint written), marks the
end of step ``SHORT`` and of step ``LONG``; the ``time.process_time`` between them, less the time in
``save_checkpoint`` (wrapped), divided by the turns of steps ``SHORT+1..LONG`` (``metrics.jsonl``) is the cost of
a turn. So start-up, imports, world generation, the warm start, the task pool, the first ``SHORT`` steps (cold
caches), checkpoints and the evaluation are all left out, for both trees alike, and the figure does not depend on
how long they took. The base commit is checked out into a temporary detached git worktree; the two trees run
alternately (``--repeats`` each, the first tree swapped every repeat), and the median and minimum over the
repeats are reported, with the speed-up of the medians and of the minima, and the 1-minute load at start and end.

Secondary (the former primary): the marginal CPU of a turn, ``(cpu[LONG] - cpu[SHORT]) / (turns[LONG] -
turns[SHORT])`` of the whole ``train_arm`` call of the ``LONG``-step run and of a ``SHORT``-step run made in the
same repeat; start-up cancels only on average (about +-0.2-0.4 ms a turn on a shared 2-core machine).

The split of this tree's turn (environment: making, reset, step, close; candidates; encoding; scoring and
sampling; update; the rest: the rollout loop, credit, metrics and logs) comes from one more ``LONG``-step run
with those functions wrapped by timers (each part's own CPU, less the parts nested in it; an environment's
coroutine counted only while it runs, not while it waits), inside the same window of steps. The timers cost a
little, so that run's total is reported beside the split and is not used for the speed-up.

The two trees train with their own recipe's learner settings (at 46bd47a: no kind-first exploration, episode
credit), so their episodes differ; the figure compared is the cost of one environment turn of training.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "bench_train_child.py"
REST = "rest: rollout loop, credit, metrics, logs"


def in_steps(run: dict, short: int, long: int) -> dict:
    """CPU of steps ``short+1..long`` of one child run (``bench_train_child.py``'s output ``run``).

    The window opens at the last progress mark of step ``short`` and closes at the first mark of step ``long``
    after it; checkpoint CPU and the timers are differenced over the same marks.

    Returns:
        ``cpu_s``, ``turns``, ``episodes``, ``ms_per_turn``, ``ms_per_episode`` and ``timers_s`` (each timer's
        seconds inside the window).

    Raises:
        ValueError: ``0 <= short < long`` does not hold, a mark is missing, or the window has no turns.
    """
    if not 0 <= short < long:
        raise ValueError(f"steps: need 0 <= SHORT < LONG, got {short} and {long}")
    marks = run["marks"]
    opens = [i for i, m in enumerate(marks) if m[0] == short]
    if not opens:
        raise ValueError(f"no progress mark for step {short}")
    closes = [i for i, m in enumerate(marks) if m[0] == long and i > opens[-1]]
    if not closes:
        raise ValueError(f"no progress mark for step {long} after step {short}'s")
    a, b = marks[opens[-1]], marks[closes[0]]
    rows = [r for r in run["rows"] if short < r[0] <= long]
    turns, episodes = sum(r[1] for r in rows), sum(r[2] for r in rows)
    if turns <= 0:
        raise ValueError(f"steps {short + 1}-{long} have no turns")
    cpu = (b[1] - a[1]) - (b[2] - a[2])
    return {"cpu_s": cpu, "turns": turns, "episodes": episodes, "ms_per_turn": 1000 * cpu / turns,
            "ms_per_episode": 1000 * cpu / episodes, "timers_s": {k: v - a[3].get(k, 0.0) for k, v in b[3].items()}}


def marginal(short: dict, long: dict) -> float:
    """Marginal ms of CPU per turn between a short and a long child run (whole ``train_arm`` calls).

    Raises:
        ValueError: the long run has no more turns than the short one.
    """
    turns = sum(r[1] for r in long["rows"]) - sum(r[1] for r in short["rows"])
    if turns <= 0:
        raise ValueError("the long run has no more turns than the short one")
    return 1000 * (long["cpu_s"] - short["cpu_s"]) / turns


def spread(values: list[float]) -> dict:
    """``{"median", "min", "runs"}`` of ``values`` (rounded to the microsecond)."""
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "runs": [round(v, 3) for v in values]}


def split(run: dict, short: int, long: int) -> dict[str, float]:
    """ms per turn of each timed part inside the window of a ``--split`` child run, the rest, and the total."""
    window = in_steps(run, short, long)
    parts = {k: 1000 * v / window["turns"] for k, v in sorted(window["timers_s"].items())}
    parts[REST] = window["ms_per_turn"] - sum(parts.values())
    parts["total (with the timers)"] = window["ms_per_turn"]
    return {k: round(v, 3) for k, v in parts.items()}


def speedups(this: dict, base: dict) -> dict[str, float]:
    """The base's ms a turn over this tree's: of the in-step medians, of their minima, and of the marginals' medians."""
    ratio = lambda measure, stat: round(base[measure][stat] / this[measure][stat], 2)  # noqa: E731
    return {"in_steps_median": ratio("in_steps_ms_per_turn", "median"),
            "in_steps_min": ratio("in_steps_ms_per_turn", "min"),
            "marginal_median": ratio("marginal_ms_per_turn", "median")}


def _child(tree: Path, steps: int, arm: str, timers: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="simrl-bench-train-") as out:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        done = subprocess.run([sys.executable, str(CHILD), str(tree), str(steps), arm, out]
                              + (["--split"] if timers else []),
                              capture_output=True, text=True, env=env, cwd=tree, check=False)
        if done.returncode != 0:
            raise SystemExit(f"training in {tree} failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def measure(trees: dict[str, Path], arm: str, short: int, long: int, repeats: int) -> dict[str, dict]:
    """Per tree: the in-step and marginal ms a turn of each repeat, the trees alternating (first one swapped)."""
    found: dict[str, dict[str, list]] = {name: {"in": [], "marginal": [], "load": []} for name in trees}
    names = list(trees)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            found[name]["load"].append(round(os.getloadavg()[0], 2))
            a, b = _child(trees[name], short, arm), _child(trees[name], long, arm)
            found[name]["in"].append(in_steps(b, short, long))
            found[name]["marginal"].append(marginal(a, b))
    out = {}
    for name, f in found.items():
        out[name] = {"in_steps_ms_per_turn": spread([w["ms_per_turn"] for w in f["in"]]),
                     "in_steps_ms_per_episode": spread([w["ms_per_episode"] for w in f["in"]]),
                     "turns_measured": [w["turns"] for w in f["in"]],
                     "marginal_ms_per_turn": spread(f["marginal"]), "load_at_each_repeat": f["load"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="46bd47a", help="commit to compare with (default: 46bd47a)")
    parser.add_argument("--arm", nargs="+", default=["sim-controlled", "real"],
                        help="arms of recipes/quickstart.yaml, measured one after the other (default: sim-controlled "
                             "real)")
    parser.add_argument("--steps", type=int, nargs=2, default=(2, 42), metavar=("SHORT", "LONG"),
                        help="steps SHORT+1..LONG of a LONG-step run are measured; the marginal also runs SHORT "
                             "steps (default: 2 42)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each tree, alternating (default: 3)")
    parser.add_argument("--no-split", action="store_true", help="skip the timed run that splits this tree's turn")
    args = parser.parse_args()
    short, long = args.steps
    if not 0 <= short < long or args.repeats < 1:
        parser.error("need 0 <= SHORT < LONG and --repeats >= 1")
    results = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "steps_measured": [short + 1, long],
               "repeats": args.repeats, "load_at_start": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
               "this_commit": subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                             capture_output=True, text=True, check=False).stdout.strip(),
               "base": args.base, "arms": {}}
    with tempfile.TemporaryDirectory(prefix="simrl-bench-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
                       check=True, capture_output=True)
        try:
            for arm in args.arm:
                found = measure({"this_tree": ROOT, "base_tree": base}, arm, short, long, args.repeats)
                found["speedup"] = speedups(found["this_tree"], found["base_tree"])
                if not args.no_split:
                    found["split_ms_per_turn"] = split(_child(ROOT, long, arm, timers=True), short, long)
                results["arms"][arm] = found
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False,
                           capture_output=True)
    results["load_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
