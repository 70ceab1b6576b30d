"""benchmarks/bench_train.py's arithmetic: the window of steps, the marginal, and the child's timers."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# [step, cpu_s, checkpoint_cpu_s, timers]: three reports before step 1 (warm start, pool, "step 0"), a
# checkpoint during step 3, and a later report of the last step (e.g. "evaluating") that must not close the window
RUN = {"cpu_s": 9.0, "rows": [[1, 10, 2], [2, 20, 2], [3, 30, 2], [4, 40, 2]],
       "marks": [[0, 1.0, 0.0, {}], [0, 1.5, 0.0, {}], [0, 2.0, 0.0, {}], [1, 3.0, 0.0, {"env": 0.1}],
                 [2, 4.0, 0.0, {"env": 0.3}], [3, 5.5, 0.5, {"env": 0.6, "update": 0.2}],
                 [4, 7.0, 0.5, {"env": 0.9, "update": 0.4}], [4, 9.0, 0.5, {"env": 0.9, "update": 0.4}]]}


def test_in_steps_window_leaves_out_checkpoints_and_earlier_steps():
    bench = _load("bench_train")
    w = bench.in_steps(RUN, 2, 4)
    assert w["cpu_s"] == pytest.approx(7.0 - 4.0 - 0.5)
    assert (w["turns"], w["episodes"]) == (70, 4)
    assert w["ms_per_turn"] == pytest.approx(2500 / 70)
    assert w["ms_per_episode"] == pytest.approx(2500 / 4)
    assert w["timers_s"] == pytest.approx({"env": 0.6, "update": 0.4})
    w0 = bench.in_steps(RUN, 0, 4)  # opens at the last report before step 1
    assert w0["cpu_s"] == pytest.approx(7.0 - 2.0 - 0.5)
    assert w0["turns"] == 100
    parts = bench.split(RUN, 2, 4)
    assert parts["env"] == pytest.approx(600 / 70, abs=1e-3)
    assert parts["env"] + parts["update"] + parts[bench.REST] == pytest.approx(parts["total (with the timers)"],
                                                                                abs=2e-3)


def test_in_steps_and_marginal_refuse_what_they_cannot_measure():
    bench = _load("bench_train")
    with pytest.raises(ValueError, match="no progress mark for step 5"):
        bench.in_steps(RUN, 2, 5)
    with pytest.raises(ValueError, match="SHORT < LONG"):
        bench.in_steps(RUN, 3, 3)
    empty = {**RUN, "rows": [[r[0], 0, r[2]] for r in RUN["rows"]]}
    with pytest.raises(ValueError, match="no turns"):
        bench.in_steps(empty, 2, 4)
    short = {"cpu_s": 5.0, "rows": RUN["rows"][:2]}
    assert bench.marginal(short, RUN) == pytest.approx(1000 * 4.0 / 70)
    with pytest.raises(ValueError, match="no more turns"):
        bench.marginal(RUN, short)
    assert bench.spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "runs": [3.0, 1.0, 2.0, 10.0]}
    this = {"in_steps_ms_per_turn": {"median": 0.5, "min": 0.4}, "marginal_ms_per_turn": {"median": 0.8}}
    base = {"in_steps_ms_per_turn": {"median": 6.0, "min": 5.0}, "marginal_ms_per_turn": {"median": 6.0}}
    assert bench.speedups(this, base) == {"in_steps_median": 12.0, "in_steps_min": 12.5, "marginal_median": 7.5}


def test_child_timers_count_own_cpu_only(monkeypatch):
    """A timed coroutine is charged only while it runs, less the timed parts nested in it: a fake clock that
    the code advances by hand, another episode running while the timed one waits."""
    child = _load("bench_train_child")
    clock = [0.0]
    monkeypatch.setattr(time, "process_time", lambda: clock[0])

    def candidates():
        clock[0] += 5

    candidates = child.timed("candidates", candidates)

    async def step(fail: bool):
        clock[0] += 1
        candidates()
        await asyncio.sleep(0)  # the other episode runs now
        clock[0] += 2
        if fail:
            raise RuntimeError("environment failure")
        return "observation"

    async def other_episode():
        clock[0] += 10

    step = child.timed_async("environment", step)

    async def main():
        return await asyncio.gather(step(False), other_episode())

    assert asyncio.run(main())[0] == "observation"
    assert child.TIMERS == {"environment": 3.0, "candidates": 5.0}
    with pytest.raises(RuntimeError, match="environment failure"):
        asyncio.run(step(True))
    assert child.TIMERS == {"environment": 6.0, "candidates": 10.0}
    assert child.OPEN == []
