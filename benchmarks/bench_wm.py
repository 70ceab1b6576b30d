"""Benchmark: overhead of the world-model environment over a raw request, and 256 concurrent episodes.

Both use the ``openai`` backend against a local OpenAI-compatible stub (``simrl.testing.openai_stub``,
a real uvicorn HTTP server on 127.0.0.1, replying at once), with the response cache off:

* **overhead**: ``N`` tool steps through :class:`~simrl.wm.env.WorldModelEnv` (``search`` env,
  episodes of ``--turns`` steps) against the same ``N`` chat-completion requests sent raw with the same
  ``AsyncOpenAI`` client and the very same bodies (recorded from the environment's requests), one at a
  time, as the backend sends them (``client.post``; ``chat.completions.create`` is shown too). Overhead per step = (environment time - raw time) / N, in ms: prompt building, schema validation,
  parsing, bookkeeping. Median of ``--rounds`` rounds. Target: <= 2 ms.
* **concurrency**: ``--episodes`` (256) episodes at once (``simrl.rollout.rollout``, concurrency = all),
  each ``--turns`` web_search calls then an answer; reports wall time, steps/s and episodes that met an
  environment failure. Target: none.

Prints a table and one JSON line.

Usage:
    python benchmarks/bench_wm.py [--world DIR] [--steps 400] [--turns 8] [--episodes 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from simrl.rollout import rollout
from simrl.testing.openai_stub import StubEndpoint
from simrl.types import Action
from simrl.wm.env import WorldModelEnv
from simrl.wm.openai_backend import OpenAIBackend
from simrl.world import generate_world, load_spec, load_tasks

REPLY = "<think>ok</think><predicted_observation>A search for 'q' found 0 results.</predicted_observation>"


class Scripted:
    """A policy that calls ``web_search`` ``turns`` times, then answers."""

    def __init__(self, turns: int) -> None:
        self.turns = turns

    async def act(self, task_view, initial, turns):  # noqa: D102
        if len(turns) < self.turns:
            return Action.call("web_search", query=f"query {len(turns)} of {task_view['task_id']}")
        return Action.final("<answer>none</answer>")


async def env_steps(world: Path, backend: OpenAIBackend, tasks: list, steps: int, turns: int) -> float:
    """Seconds spent in ``env.step`` for ``steps`` tool steps (episodes of ``turns`` steps)."""
    policy, spent, done = Scripted(turns), 0.0, 0
    while done < steps:
        env = WorldModelEnv("search", world, backend)
        task = tasks[done // turns % len(tasks)]
        initial = await env.reset(task)
        history: list = []
        for _ in range(min(turns, steps - done)):
            action = await policy.act(task.policy_view(), initial, history)
            start = time.perf_counter()
            step = await env.step(action)
            spent += time.perf_counter() - start
            assert not step.info.get("env_failure"), step.info
            done += 1
        await env.close()
    return spent


async def raw_requests(backend: OpenAIBackend, bodies: list[dict], sdk_create: bool) -> float:
    """Seconds for the same chat requests sent raw, one at a time, with the backend's client:
    ``client.post("/chat/completions", body)`` (what the backend sends) or ``chat.completions.create``."""
    from openai.types.chat import ChatCompletion

    client, _ = backend._client()
    start = time.perf_counter()
    for body in bodies:
        if sdk_create:
            await client.chat.completions.create(**body)
        else:
            await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
    return time.perf_counter() - start


async def overhead(world: Path, ep: StubEndpoint, steps: int, turns: int, rounds: int) -> dict:
    """Per-step overhead of ``WorldModelEnv`` over the same requests sent raw: median of ``rounds`` rounds.

    Returns ``{steps, env_ms_per_step, raw_ms_per_request, sdk_create_ms_per_request, overhead_ms_per_step}``
    (milliseconds, rounded to 3 decimals). Raises ``AssertionError`` if a step meets an environment failure.
    """
    backend = OpenAIBackend(ep.url, "stub-model")
    tasks = load_tasks(world, type="qa")
    await env_steps(world, backend, tasks, 32, turns)  # warm-up: imports, connections, index
    per_env, per_raw, per_sdk = [], [], []
    for _ in range(rounds):
        ep.requests.clear()
        per_env.append(await env_steps(world, backend, tasks, steps, turns) / steps)
        bodies = list(ep.requests)
        per_raw.append(await raw_requests(backend, bodies, False) / len(bodies))
        per_sdk.append(await raw_requests(backend, bodies, True) / len(bodies))
    await backend.close()
    env_ms, raw_ms, sdk_ms = (statistics.median(x) * 1e3 for x in (per_env, per_raw, per_sdk))
    return {"steps": steps, "env_ms_per_step": round(env_ms, 3), "raw_ms_per_request": round(raw_ms, 3),
            "sdk_create_ms_per_request": round(sdk_ms, 3), "overhead_ms_per_step": round(env_ms - raw_ms, 3)}


async def concurrent(world: Path, ep: StubEndpoint, episodes: int, turns: int) -> dict:
    """``episodes`` episodes of ``turns`` web_search calls each, all in flight at once, through one backend.

    Returns ``{episodes, steps, wall_s, steps_per_s, env_failures, finished}`` (``wall_s`` in seconds).
    """
    backend = OpenAIBackend(ep.url, "stub-model", max_concurrency=64)
    tasks = [t for t in load_tasks(world) if t.type != "records"]
    tasks = [tasks[i % len(tasks)] for i in range(episodes)]
    start = time.perf_counter()
    trajs = await rollout(lambda: WorldModelEnv("search", world, backend), Scripted(turns), tasks,
                          max_turns=turns + 1, concurrency=episodes)
    wall = time.perf_counter() - start
    await backend.close()
    failures = sum(t.status == "env_failure" for t in trajs)
    finished = sum(bool(t.turns) and t.turns[-1].step.terminated for t in trajs)
    return {"episodes": episodes, "steps": episodes * turns, "wall_s": round(wall, 3),
            "steps_per_s": round(episodes * turns / wall, 1), "env_failures": failures, "finished": finished}


def main() -> None:
    """Parse the arguments, run both measurements against a local stub, print the table and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=Path, help="a world folder (default: the tiny spec, seed 3, in a temp dir)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, StubEndpoint(lambda body: REPLY) as ep:
        world = args.world
        if world is None:
            world = Path(tmp) / "tiny-3"
            generate_world(load_spec(Path(__file__).resolve().parents[1] / "worlds" / "tiny.yaml"), 3, world)
        over = asyncio.run(overhead(world, ep, args.steps, args.turns, args.rounds))
        conc = asyncio.run(concurrent(world, ep, args.episodes, args.turns))
    rows = [("env step (ms)", over["env_ms_per_step"]), ("raw request, client.post (ms)", over["raw_ms_per_request"]),
            ("raw request, chat.completions.create (ms)", over["sdk_create_ms_per_request"]),
            ("overhead per step (ms, target <= 2)", over["overhead_ms_per_step"]),
            (f"{conc['episodes']} concurrent episodes: wall (s)", conc["wall_s"]),
            ("  steps/s", conc["steps_per_s"]), ("  env failures (target 0)", conc["env_failures"]),
            ("  finished episodes", conc["finished"])]
    width = max(len(r[0]) for r in rows)
    print(f"{'world-model env (openai -> local stub, cache off)':{width}s}   value")
    for name, value in rows:
        print(f"{name:{width}s}   {value}")
    print(json.dumps({"bench": "wm", "overhead": over, "concurrency": conc}))


if __name__ == "__main__":
    main()
