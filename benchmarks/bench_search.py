"""Benchmark: search over a world's corpus (``simrl.envs.search.SearchIndex``).

Measures index build time (no cache), load time (from the on-disk cache), per-query latency
(p50 / p95 / mean, ms) of ``search`` for single queries, and throughput (queries/s) of
``search_many`` on batches, plus the bare ranking (``rank``: ids and scores, no snippets) that the
Search-R1 ``/retrieve`` endpoint pays. Queries are realistic: entity names (page titles) and task
prompts of the world's tasks, shuffled with a fixed seed. Prints a table and one JSON line.

The issue's targets, on 2 cores: p50 <= 5 ms per query and >= 500 queries/s.

Usage:
    simrl world generate worlds/default.yaml --entities 100000 --seed 1 --out /tmp/w100k
    python benchmarks/bench_search.py --world /tmp/w100k [--queries 2000] [--batch 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from simrl.envs.search import SearchIndex
from simrl.world.io import iter_documents, load_tasks


def make_queries(world: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` queries: half entity-page titles, half task prompts (cycled when the world is small)."""
    names = [d.title for d in iter_documents(world) if d.kind == "entity"]
    prompts = [t.prompt for t in load_tasks(world) if t.type != "records"]
    rng = random.Random(seed)
    pool = rng.sample(names, min(len(names), n // 2)) + rng.sample(prompts, min(len(prompts), n - n // 2))
    rng.shuffle(pool)
    return [pool[i % len(pool)] for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_build(world: Path) -> tuple[float, float]:
    """Seconds to build the index without a cache, then to load it from a fresh cache."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        SearchIndex.open(world, cache_dir=tmp).close()
        build = time.perf_counter() - start
        start = time.perf_counter()
        SearchIndex.open(world, cache_dir=tmp).close()
        return build, time.perf_counter() - start


def throughput(fn, queries: list[str], batch: int) -> float:
    """Queries per second of ``fn(batch_of_queries)`` over all ``queries``."""
    start = time.perf_counter()
    for i in range(0, len(queries), batch):
        fn(queries[i:i + batch])
    return len(queries) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True, help="World folder (simrl world generate).")
    parser.add_argument("--queries", type=int, default=2000, help="Number of queries per measurement.")
    parser.add_argument("--batch", type=int, default=64, help="Batch size for search_many.")
    parser.add_argument("--threads", type=int, default=2, help="Threads for the threaded search_many run.")
    parser.add_argument("--skip-build", action="store_true", help="Do not time a cold build.")
    args = parser.parse_args()

    build, load = (None, None) if args.skip_build else time_build(args.world)
    index = SearchIndex.open(args.world)
    queries = make_queries(args.world, args.queries)
    for q in queries[:50]:  # warm-up: page cache, allocator
        index.search(q)
    lat = []
    for q in queries:
        start = time.perf_counter()
        index.search(q, 10)
        lat.append((time.perf_counter() - start) * 1000)
    rank_lat = []
    for q in queries:
        start = time.perf_counter()
        index.rank(q, 10)
        rank_lat.append((time.perf_counter() - start) * 1000)
    qps = throughput(lambda b: index.search_many(b, 10), queries, args.batch)
    qps_threads = throughput(lambda b: index.search_many(b, 10, n_threads=args.threads), queries, args.batch)
    qps_rank = throughput(lambda b: [index.rank(q, 10) for q in b], queries, args.batch)
    row = {"world": str(args.world), "documents": len(index), "queries": len(queries), "cpus": os.cpu_count(),
           "build_s": build and round(build, 2), "load_s": load and round(load, 3),
           "search_p50_ms": round(percentile(lat, 0.5), 3), "search_p95_ms": round(percentile(lat, 0.95), 3),
           "search_mean_ms": round(statistics.fmean(lat), 3),
           "rank_p50_ms": round(percentile(rank_lat, 0.5), 3), "rank_p95_ms": round(percentile(rank_lat, 0.95), 3),
           "search_many_qps": round(qps), f"search_many_qps_{args.threads}threads": round(qps_threads),
           "rank_qps": round(qps_rank), "batch": args.batch}
    width = max(map(len, row))
    for key, value in row.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(row))
    index.close()


if __name__ == "__main__":
    main()
