"""Benchmark: `simrl world generate` wall time and peak RSS at several world sizes.

Each size runs in its own process (``simrl world generate worlds/default.yaml --entities N``) so the
peak resident set size is that run's alone (``os.wait4`` rusage). Prints a table and one JSON line
per size; the issue's target is <= 60 s and <= 4 GiB at 100,000 entities (with >= 10,000 tasks),
growing about linearly with size.

Usage: python benchmarks/bench_world.py [--sizes 1000 10000 100000] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(size: int, out: Path, seed: int) -> dict:
    """Generate one world in a child process; returns seconds, peak RSS (MiB) and the manifest counts."""
    folder = out / f"world-{size}"
    cmd = [sys.executable, "-m", "simrl.cli.main", "world", "generate", str(ROOT / "worlds/default.yaml"),
           "--entities", str(size), "--seed", str(seed), "--out", str(folder), "--force"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"generation of {size} entities failed (status {status}): {' '.join(cmd)}")
    counts = json.loads((folder / "manifest.json").read_text())["counts"]
    tasks = sum(sum(v.values()) for v in counts["tasks"].values())
    return {"entities": size, "seconds": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "relations": counts["relations"]["total"], "documents": counts["documents"]["total"], "tasks": tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = [run(n, args.out, args.seed) for n in args.sizes]
    print(f"{'entities':>9} {'seconds':>8} {'s/1k ent':>9} {'peak MiB':>9} {'relations':>10} {'documents':>10} {'tasks':>7}")
    for r in rows:
        print(f"{r['entities']:>9} {r['seconds']:>8} {r['seconds'] / r['entities'] * 1000:>9.3f} "
              f"{r['peak_rss_mib']:>9} {r['relations']:>10} {r['documents']:>10} {r['tasks']:>7}")
    for r in rows:
        print(json.dumps({"bench": "world_generate", **r}))


if __name__ == "__main__":
    main()
