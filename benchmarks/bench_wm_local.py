"""Benchmark: local world models with and without the prefix cache, on recorded mcp-world episodes.

Records ``--episodes`` real mcp-world episodes (the tiny world at seed 3, the scripted expert policy,
``simrl rollout``), takes their transitions (:func:`simrl.wm.transitions.load_transitions`: the world
model's chat for each tool call, the episode's real history included) and predicts every one, episode after
episode, in the order a world-model environment asks for them, with each backend twice: prefix cache off
(every prompt evaluated from its first token) and on (:mod:`simrl.wm.llamacpp_backend`,
:mod:`simrl.wm.transformers_backend`). Greedy, ``--max-tokens`` per prediction.

Reported per backend and mode: predictions, mean prompt tokens, mean prefill tokens (those evaluated; the
rest came from the cache), ms per prediction (mean and median), prefill and generation tokens/s where the
backend times them apart (llama.cpp), the speed-up of the mean time per prediction, and how many greedy
outputs are identical with and without the cache. Target: >= 5x less time per prediction, identical
outputs. The first prediction of each mode (which loads the model) is left out of the times.

Prints a table and one JSON line.

``--interleave`` asks in turn across episodes (the first call of each, then the second ...), as episodes
that run concurrently do; the llamacpp backend then restores each episode's saved state.

Usage:
    python benchmarks/bench_wm_local.py [--episodes 3] [--max-tokens 64] [--threads 1]
        [--backends llamacpp transformers] [--max-predictions 12] [--interleave]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from simrl.wm.backend import Sampling
from simrl.wm.transitions import load_transitions


def record(folder: Path, episodes: int) -> tuple[Path, Path]:
    """Generate the tiny world (seed 3) and record ``episodes`` real mcp-world expert episodes."""
    world, trajs = folder / "world-3", folder / "real.jsonl"
    run = [sys.executable, "-m", "simrl"]
    subprocess.run([*run, "world", "generate", "tiny", "--seed", "3", "--out", str(world)], check=True,
                   capture_output=True)
    subprocess.run([*run, "rollout", "--env", "mcp-world", "--world", str(world), "--split", "train",
                    "-n", str(episodes), "--out", str(trajs)], check=True, capture_output=True)
    return world, trajs


def make(backend: str, cache: bool, threads: int) -> Any:
    """A backend with the prefix cache on or off."""
    if backend == "llamacpp":
        from simrl.wm.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(n_ctx=8192, n_threads=threads, prefix_cache=cache)
    import torch

    from simrl.wm.transformers_backend import TransformersBackend

    torch.set_num_threads(threads)
    return TransformersBackend("smollm2", prefix_cache=cache)


async def run(backend: Any, chats: list[list[dict[str, str]]], max_tokens: int) -> list[dict[str, Any]]:
    """Predict every chat in order; one row per prediction (text, stats, wall ms)."""
    rows = []
    for chat in chats:
        start = time.perf_counter()
        text = await backend.generate(chat, Sampling(max_tokens=max_tokens))
        rows.append({"text": text, "ms": (time.perf_counter() - start) * 1e3, **backend.last_stats})
        print(f"  {backend.name} cache={'on' if backend_cache(backend) else 'off'} {len(rows)}/{len(chats)}: "
              f"{rows[-1]['ms']:.0f} ms, {rows[-1]['prefill_tokens']}/{rows[-1]['prompt_tokens']} prompt tokens "
              "evaluated", file=sys.stderr, flush=True)
    await backend.close()
    return rows


def backend_cache(backend: Any) -> bool:
    """Whether ``backend`` runs with its prefix cache."""
    return bool(getattr(backend, "prefix_cache", None) if hasattr(backend, "prefix_cache")
                else backend.options.get("prefix_cache"))


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the predictions after the first (the first loads the model)."""
    timed = rows[1:] or rows
    out = {"predictions": len(rows), "prompt_tokens": statistics.mean(r["prompt_tokens"] for r in timed),
           "prefill_tokens": statistics.mean(r["prefill_tokens"] for r in timed),
           "ms_mean": statistics.mean(r["ms"] for r in timed), "ms_median": statistics.median(r["ms"] for r in timed)}
    if all("prefill_ms" in r for r in timed):
        prefill_s = sum(r["prefill_ms"] for r in timed) / 1e3
        decode_s = sum(r["decode_ms"] for r in timed) / 1e3
        out["prefill_tok_s"] = sum(r["prefill_tokens"] for r in timed) / prefill_s if prefill_s else None
        out["gen_tok_s"] = sum(r["completion_tokens"] for r in timed) / decode_s if decode_s else None
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--max-predictions", type=int, default=12, help="most transitions predicted per mode")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backends", nargs="+", default=["llamacpp"], choices=["llamacpp", "transformers"])
    parser.add_argument("--interleave", action="store_true",
                        help="ask in turn across episodes (as concurrent episodes do), not episode after episode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world, trajs = record(Path(tmp), args.episodes)
        transitions = load_transitions(trajs, world=world)[:args.max_predictions]
    if args.interleave:  # round robin over the episodes: the i-th call of each, then the (i+1)-th
        transitions.sort(key=lambda t: t.turn_idx)
    chats = [t.messages() for t in transitions]
    episodes = len({t.trajectory for t in transitions})
    print(f"{len(chats)} predictions from {episodes} mcp-world episodes"
          f"{' (interleaved)' if args.interleave else ''}; greedy, max_tokens={args.max_tokens}, "
          f"{args.threads} thread(s); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    results: dict[str, Any] = {}
    for name in args.backends:
        rows = {mode: asyncio.run(run(make(name, mode == "on", args.threads), chats, args.max_tokens))
                for mode in ("off", "on")}
        entry = {mode: summary(r) for mode, r in rows.items()}
        entry["speedup"] = round(entry["off"]["ms_mean"] / entry["on"]["ms_mean"], 2)
        entry["identical"] = sum(a["text"] == b["text"] for a, b in zip(rows["off"], rows["on"]))
        results[name] = entry
    print(f"{'backend':<13}{'cache':<6}{'prompt tok':>11}{'prefill tok':>12}{'ms/pred':>10}{'median':>10}"
          f"{'prefill t/s':>12}{'gen t/s':>9}")
    for name, entry in results.items():
        for mode in ("off", "on"):
            s = entry[mode]
            print(f"{name:<13}{mode:<6}{s['prompt_tokens']:>11}{s['prefill_tokens']:>12}{s['ms_mean']:>10}"
                  f"{s['ms_median']:>10}{s.get('prefill_tok_s') or '-':>12}{s.get('gen_tok_s') or '-':>9}")
        print(f"{name}: {entry['speedup']}x less time per prediction with the cache; "
              f"{entry['identical']}/{len(chats)} greedy outputs identical")
    print(json.dumps({"bench": "wm_local", "predictions": len(chats), "interleave": args.interleave,
                      "max_tokens": args.max_tokens,
                      "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
