"""The world-model loop on CPU with the real SmolLM2-135M: real transitions of several worlds -> SFT with a
held-out fidelity curve per checkpoint -> fidelity on a held-out world, with intervals and control compliance.

Steps, each timed (wall and CPU seconds of the ``simrl`` subprocesses):

1. worlds: ``--train-worlds`` training worlds (tiny spec, seeds 3, 4, ...), a validation world (seed 1004:
   chooses the checkpoint) and a held-out world (seed 1003: the final measurement; never trained on, never
   used to choose);
2. real expert rollouts of ``mcp-world``: every train-split task of each training world; every task of the
   validation and held-out worlds;
3. ``simrl wm data`` per training world (all tools in the prompt, as the world-model environment shows
   them; ``--perturb`` control variants each), the rows merged into ``OUT/train-all.jsonl``;
4. ``simrl wm train`` from the packaged SmolLM2-135M-Instruct GGUF (full fine-tuning, CPU), every
   ``--save-every`` steps a checkpoint scored on ``--curve-transitions`` validation transitions (llamacpp,
   greedy): ``OUT/wm-model/curve.json``; it stops when that fidelity stops improving (``--patience``); the
   best checkpoint's GGUF is copied to ``OUT/wm.gguf`` (what ``recipes/lwm-fidelity.yaml`` loads);
5. ``simrl wm eval`` on held-out transitions: ``oracle``, ``base`` (the packaged GGUF) and ``trained``
   (``OUT/wm.gguf``), llamacpp, greedy, ``--max-tokens`` tokens (as the recipe's arms), with the baselines,
   95% intervals over transitions, and control compliance on ``--perturb`` perturbed held-out transitions:
   ``OUT/fidelity`` (what the recipe's ``fidelity:`` fields name); answers cached in ``OUT/fidelity-cache``
   (the base model's can be computed ahead, while the SFT runs, by the same command without ``trained``).

Writes ``OUT/bench.json`` and prints the RESULTS.md section. Steps whose output exists are skipped and the SFT
resumes from its newest checkpoint (a killed run continues where it stopped). Sized for a shared 2-core machine; raise ``--steps`` and the
evaluation sizes where more CPU (or a GPU: ``--device cuda``) is at hand.

    python benchmarks/bench_wm_train.py --out runs/lwm [--train-worlds 8 --steps 8 --save-every 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIMRL = [sys.executable, "-m", "simrl.cli.main"]
VAL, HELDOUT = 1004, 1003


def step(name: str, args: list[str], timings: dict, done: Path | None = None) -> None:
    """Run ``simrl ARGS`` unless ``done`` exists (its stderr shown live); record its wall and CPU seconds under ``name``;
    raise on failure."""
    if done is not None and done.exists():
        return
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # stderr (progress, ETA) goes through live, so a long step (the SFT: hours) shows where it is
    proc = subprocess.run([*SIMRL, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=None, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timings[name] = {"wall_s": round(time.perf_counter() - t0, 1),
                     "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)}
    print(f"{name}: {timings[name]}", file=sys.stderr, flush=True)
    if proc.returncode:
        raise SystemExit(f"{name} failed ({proc.returncode}; its stderr is above):\n{proc.stdout[-3000:]}")


def rollouts(out: Path, seed: int, splits: tuple[str, ...], t: dict) -> Path:
    """Expert episodes of every task of ``splits`` in world ``seed``, in one JSONL file."""
    files = []
    for split in splits:
        f = out / f"real-{seed}-{split}.jsonl"
        step(f"rollout {seed} {split}", ["rollout", "--env", "mcp-world", "--world", str(out / f"world-{seed}"),
                                         "--policy", "expert", "--split", split, "--out", str(f)], t, f)
        files.append(f)
    merged = out / f"real-{seed}.jsonl"
    merged.write_text("".join(f.read_text() for f in files))
    return merged


def main() -> None:
    """Run the loop and print the RESULTS.md section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/lwm"))
    ap.add_argument("--train-worlds", type=int, default=8, help="training worlds (seeds 3, 4, ...)")
    ap.add_argument("--perturb-per-world", type=int, default=12, help="control variants per training world")
    ap.add_argument("--steps", type=int, default=6, help="most SFT optimizer steps (early stop on the curve)")
    ap.add_argument("--save-every", type=int, default=2, help="steps between scored checkpoints")
    ap.add_argument("--patience", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=4096)
    ap.add_argument("--curve-transitions", type=int, default=3, help="validation transitions per checkpoint")
    ap.add_argument("--eval", type=int, default=6, help="held-out transitions scored")
    ap.add_argument("--perturb", type=int, default=2, help="held-out perturbed transitions (compliance)")
    ap.add_argument("--max-tokens", type=int, default=256, help="tokens per prediction (final evaluation)")
    ap.add_argument("--curve-max-tokens", type=int, default=160, help="tokens per prediction (curve)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t: dict = {}
    load0 = os.getloadavg()
    seeds = list(range(3, 3 + a.train_worlds))
    for seed in [*seeds, VAL, HELDOUT]:
        w = out / f"world-{seed}"
        step(f"world {seed}", ["world", "generate", "worlds/tiny.yaml", "--seed", str(seed), "--out", str(w)], t, w)
    rows = []
    for seed in seeds:
        real = rollouts(out, seed, ("train",), t)
        data = out / f"data-{seed}"
        step(f"wm data {seed}", ["wm", "data", "--trajectories", str(real), "--world", str(out / f"world-{seed}"),
                                 "--perturb", str(a.perturb_per_world), "--seed", str(seed), "--out", str(data)],
             t, data / "train.jsonl")
        rows.append((data / "train.jsonl").read_text())
    (out / "train-all.jsonl").write_text("".join(rows))
    val, held = (rollouts(out, s, ("train", "dev", "test"), t) for s in (VAL, HELDOUT))
    model = out / "wm-model"
    step("wm train", ["wm", "train", "--data", str(out / "train-all.jsonl"), "--base", "smollm2",
                      "--max-steps", str(a.steps), "--save-every", str(a.save_every), "--max-length", str(a.max_length),
                      "--lr", str(a.lr), "--device", a.device, "--keep-checkpoints", "1",
                      "--curve-trajectories", str(val), "--curve-world", str(out / f"world-{VAL}"),
                      "--curve-transitions", str(a.curve_transitions), "--curve-max-tokens", str(a.curve_max_tokens),
                      "--patience", str(a.patience), "--resume", "--out", str(model)], t, model / "best.gguf")
    shutil.copyfile(model / "best.gguf", out / "wm.gguf")
    step("wm eval", ["wm", "eval", "--trajectories", str(held), "--world", str(out / f"world-{HELDOUT}"),
                     "--world-model", "oracle", "--world-model", "base=llamacpp",
                     "--world-model", f"trained=llamacpp:{out / 'wm.gguf'}", "--wm-max-tokens", str(a.max_tokens),
                     "--max-transitions", str(a.eval), "--perturb", str(a.perturb), "--concurrency", "1",
                     "--wm-cache", str(out / "fidelity-cache"), "--out", str(out / "fidelity")],
         t, out / "fidelity" / "scores.json")
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.machine()}, "
              f"{os.cpu_count()} cores", "load_before": load0, "load_after": os.getloadavg(),
              "args": vars(a) | {"out": str(a.out)}, "timings": t,
              "train": json.loads((model / "wm-train.json").read_text()),
              "data": {"rows": len((out / "train-all.jsonl").read_text().splitlines())},
              "scores": json.loads((out / "fidelity" / "scores.json").read_text())}
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    print(section(result))


def _cell(entry: dict, dim: str) -> str:
    if not entry or entry.get(dim) is None:
        return "-"
    ci = (entry.get("ci") or {}).get(dim)
    return f"{entry[dim]:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def section(r: dict) -> str:
    """The RESULTS.md tables of a run: timings, the held-out curve, the held-out fidelity."""
    s, comp, tr = r["scores"], r["scores"].get("_compliance", {}), r["train"]
    names = [n for n in ("oracle", "base", "trained", "repeat-previous", "empty") if n in s]
    lines = ["| step | wall s | CPU s |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['wall_s']} | {v['cpu_s']} |" for k, v in r["timings"].items()]
    if not r["timings"]:
        lines = ["Every step's output existed already: nothing ran in this invocation (no timings)."]
    d = tr["data"]
    lines += ["", f"SFT: {tr['steps']} steps on {d['trained_rows']} of {d['rows']} rows ({d['skipped_too_long']} too "
              f"long), {tr['train_seconds']} s.", "",
              "| step | validation fidelity (overall, 95% CI) | unparsed | SFT loss |", "|---:|---:|---:|---:|"]
    loss = {x["step"]: f"{x['loss']:.3f}" for x in tr.get("log", [])}
    for p in tr.get("curve", []):
        ci = f" [{p['ci'][0]:.1f}, {p['ci'][1]:.1f}]" if p.get("ci") else ""
        lines.append(f"| {p['step']} | {p['overall']:.1f}{ci} | {p['unparsed']}/{p['n']} | {loss.get(p['step'], '-')} |")
    lines += ["", "| held-out fidelity (0-100, 95% CI over transitions) | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for dim in ("format", "factuality", "consistency", "realism", "quality", "overall"):
        lines.append(f"| {dim} | " + " | ".join(_cell(s.get(n, {}), dim) for n in names) + " |")
    lines.append("| n / unparsed | " + " | ".join(f"{s[n]['n']} / {s[n]['unparsed']}" for n in names) + " |")
    if comp:
        lines.append("| control compliance (Wilson 95%) | " + " | ".join(
            (f"{comp[n]['complied']}/{comp[n]['n']}" + (f" [{comp[n]['ci'][0]:.2f}, {comp[n]['ci'][1]:.2f}]"
                                                        if comp[n].get("ci") else "")) if n in comp else "-"
            for n in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
