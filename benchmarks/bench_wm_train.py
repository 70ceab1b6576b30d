"""The world-model loop on CPU with the real SmolLM2-135M: real transitions -> SFT -> before/after fidelity.

Steps, each timed (wall and CPU seconds of the `simrl` subprocess):

1. two tiny worlds: a training world (seed 3) and a held-out world (seed 1003, never trained on);
2. real expert rollouts of ``mcp-world`` in both (``--split train`` in the training world);
3. ``simrl wm data`` on the training world's transitions (``--wm-tools called``, control variants);
4. ``simrl wm train`` from the packaged SmolLM2-135M-Instruct GGUF (full fine-tuning, CPU);
5. ``simrl wm eval`` on held-out transitions: base vs fine-tuned (``transformers`` backend, labels
   ``base`` and ``tuned``), the baselines, and control compliance on perturbed held-out transitions.

Writes ``OUT/bench.json`` (the figures and timings) and prints the markdown section to paste into
``benchmarks/RESULTS.md``. Sized for about 20 minutes on a shared 2-core machine (SmolLM2 generates
a few tokens per second there); raise the sizes for a real measurement.

    python benchmarks/bench_wm_train.py --out runs/bench-wm-train [--episodes 40 --steps 12 --eval 6 --perturb 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIMRL = [sys.executable, "-m", "simrl.cli.main"]


def step(name: str, args: list[str], timings: dict) -> None:
    """Run ``simrl ARGS``; record its wall and CPU seconds under ``name``; raise on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([*SIMRL, *args], cwd=ROOT, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timings[name] = {"wall_s": round(time.perf_counter() - t0, 1),
                     "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)}
    print(f"{name}: {timings[name]}", file=sys.stderr, flush=True)
    if done.returncode:
        raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def main() -> None:
    """Run the loop and print the RESULTS.md section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-wm-train"))
    ap.add_argument("--episodes", type=int, default=40, help="expert episodes in the training world")
    ap.add_argument("--steps", type=int, default=12, help="SFT optimizer steps")
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=1536)
    ap.add_argument("--eval", type=int, default=6, help="held-out transitions scored")
    ap.add_argument("--perturb", type=int, default=3, help="held-out perturbed transitions (compliance)")
    ap.add_argument("--max-tokens", type=int, default=160, help="tokens per prediction")
    a = ap.parse_args()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t, w, h = {}, out / "world-3", out / "world-1003"
    load0 = os.getloadavg()
    for world, seed in ((w, 3), (h, 1003)):
        if not world.exists():
            step(f"world {seed}", ["world", "generate", "worlds/tiny.yaml", "--seed", str(seed), "--out", str(world)], t)
    step("rollout train", ["rollout", "--env", "mcp-world", "--world", str(w), "--policy", "expert", "--split", "train",
                           "-n", str(a.episodes), "--out", str(out / "train.jsonl")], t)
    step("rollout held-out", ["rollout", "--env", "mcp-world", "--world", str(h), "--policy", "expert", "-n", "6",
                              "--out", str(out / "heldout.jsonl")], t)
    step("wm data", ["wm", "data", "--trajectories", str(out / "train.jsonl"), "--world", str(w), "--wm-tools", "called",
                     "--perturb", str(a.episodes), "--out", str(out / "data")], t)
    step("wm train", ["wm", "train", "--data", str(out / "data"), "--base", "smollm2", "--max-steps", str(a.steps),
                      "--grad-accum", str(a.grad_accum), "--max-length", str(a.max_length), "--lr", "5e-5",
                      "--save-every", str(a.steps), "--device", "cpu", "--out", str(out / "model")], t)
    step("wm eval", ["wm", "eval", "--trajectories", str(out / "heldout.jsonl"), "--world", str(h),
                     "--backend", "base=transformers:smollm2", "--backend", f"tuned=transformers:{out / 'model' / 'model'}",
                     "--wm-tools", "called", "--wm-max-tokens", str(a.max_tokens), "--max-transitions", str(a.eval),
                     "--perturb", str(a.perturb), "--concurrency", "1", "--out", str(out / "fidelity")], t)
    scores = json.loads((out / "fidelity" / "scores.json").read_text())
    manifest = json.loads((out / "model" / "wm-train.json").read_text())
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.machine()}, "
              f"{os.cpu_count()} cores", "load_before": load0, "load_after": os.getloadavg(), "args": vars(a) | {"out": str(a.out)},
              "timings": t, "train": {k: manifest[k] for k in ("steps", "train_seconds", "data", "log")},
              "scores": scores}
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    print(section(result))


def section(r: dict) -> str:
    """The RESULTS.md section of a run."""
    s, comp = r["scores"], r["scores"].get("_compliance", {})
    names = ["base", "tuned", "repeat-previous", "empty"]
    lines = [f"Date {r['date']}; machine {r['machine']}, shared with other engineers' jobs (load average "
             f"{r['load_before'][0]:.1f} before, {r['load_after'][0]:.1f} after); command "
             f"`python benchmarks/bench_wm_train.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in r["args"].items()
                                                               if k != "out") + "`.", "",
             "| step | wall s | CPU s |", "|---|---|---|"]
    lines += [f"| {k} | {v['wall_s']} | {v['cpu_s']} |" for k, v in r["timings"].items()]
    d = r["train"]["data"]
    losses = [x["loss"] for x in r["train"]["log"]]
    lines += ["", f"SFT: {r['train']['steps']} steps on {d['trained_rows']} rows ({d['skipped_too_long']} too long); "
              f"loss {losses[0]:.3f} -> {losses[-1]:.3f}." if losses else "", "",
              "| held-out fidelity (0-100) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for dim in ("format", "factuality", "consistency", "realism", "quality", "overall", "n", "unparsed"):
        lines.append(f"| {dim} | " + " | ".join(str(s.get(n, {}).get(dim, "-")) for n in names) + " |")
    if comp:
        lines.append("| control compliance | " + " | ".join(
            f"{comp[n]['complied']}/{comp[n]['n']}" if n in comp else "-" for n in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
