"""Benchmark: an expert episode on the in-process world record environment (``mcp-world``, transport inprocess).

The embedded trainer runs thousands of such episodes per recipe, so their cost bounds its speed. Measures
the scripted records expert solving one ``records`` task ``--episodes`` times, each in a fresh
:class:`~simrl.envs.records_local.LocalRecordsEnv` (reset copies the world's records into memory), one
after another on one core: median and p95 milliseconds per episode, and turns per episode. Target:
<= 50 ms per episode.

Usage:
    python benchmarks/bench_records.py [--world DIR] [--episodes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from simrl.envs.records_local import LocalRecordsEnv
from simrl.policies.records_expert import RecordsExpert
from simrl.rollout import run_episode
from simrl.world import generate_world, load_spec, load_tasks


async def episodes(world: Path, n: int) -> dict[str, float]:
    """Run ``n`` expert episodes on the first ``records`` task of ``world``.

    Returns:
        ``{"episodes", "median_ms", "p95_ms", "turns"}`` (milliseconds per episode, wall clock).

    Raises:
        RuntimeError: an episode did not succeed (the figure would not be an expert episode's).
    """
    tasks = load_tasks(world, type="records")
    expert, times, turns = RecordsExpert(world, tasks), [], []
    for i in range(n):
        start = time.perf_counter()
        env = LocalRecordsEnv(world)
        traj = await run_episode(env, expert, tasks[0], seed=i)
        await env.close()
        times.append((time.perf_counter() - start) * 1000)
        if traj.status != "success":
            raise RuntimeError(f"episode {i} ended {traj.status}: {traj.info}")
        turns.append(len(traj.turns))
    times.sort()
    return {"episodes": n, "median_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[int(0.95 * (n - 1))], 3), "turns": statistics.fmean(turns)}


def main() -> None:
    """Command line: generate a tiny world unless ``--world`` is given, measure, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=None, help="A world folder (default: tiny spec, seed 3).")
    parser.add_argument("--episodes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = args.world
        if world is None:
            world = Path(tmp) / "world"
            spec = load_spec(Path(__file__).resolve().parents[1] / "worlds" / "tiny.yaml")
            generate_world(spec, 3, world)
        print(json.dumps(asyncio.run(episodes(world, args.episodes))))


if __name__ == "__main__":
    main()
