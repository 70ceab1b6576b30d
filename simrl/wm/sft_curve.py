"""A held-out fidelity curve during ``simrl wm train``: every checkpoint scored by ``simrl wm eval``, early stop.

A training loss says nothing about how well the model predicts observations of a world it never saw. With a
:class:`CurveSpec`, each checkpoint that :mod:`simrl.wm.sft` saves is

1. exported to GGUF (Q8_0, :func:`simrl.wm.gguf_export.export_gguf`; the base must be a GGUF, the fine-tuning
   full: a LoRA checkpoint holds only an adapter) as ``OUT/curve/step-N.gguf``;
2. scored by ``simrl wm eval`` in a subprocess (the ``llamacpp`` backend, greedy, no baselines) on the first
   ``transitions`` real transitions of ``trajectories`` recorded in ``world``, into ``OUT/curve/step-N/``;
   the curve's value is the rule-based ``overall`` (0-100) with its interval over transitions;
3. appended to ``OUT/curve.json`` (``[{step, overall, ci, unparsed, n, gguf}]``, rewritten atomically).

Only the best checkpoint's GGUF is kept (about 140 MB for SmolLM2-135M); at the end it is ``OUT/best.gguf``.
Training stops when ``patience`` evaluations in a row do not beat the best by more than ``min_delta``
(``TrainerControl.should_training_stop``): the curve says when fidelity stops improving, not the loss.
An evaluation that fails (the subprocess exits non-zero) ends the run with its error: a curve with a hole
would choose the wrong checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simrl.errors import SimrlError

CURVE = "curve.json"
BEST = "best.gguf"


class CurveSpec(BaseModel):
    """What each checkpoint is scored on (``simrl wm train --curve-trajectories ...``)."""

    model_config = ConfigDict(frozen=True)
    trajectories: Path = Field(description="Real trajectories JSONL of a held-out (validation) world.")
    world: Path = Field(description="The world folder those trajectories were recorded in.")
    transitions: int = Field(default=20, ge=1, le=10000, description="Transitions scored per checkpoint.")
    max_tokens: int = Field(default=256, ge=1, le=262144, description="Tokens per prediction.")
    n_ctx: int = Field(default=4096, ge=256, le=262144, description="llama.cpp context, tokens.")
    tools: str = Field(default="all", pattern="^(all|called)$", description="Tools in the prompt (as `wm data`).")
    patience: int = Field(default=2, ge=1, le=1000, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(default=0.0, ge=0, description="Improvement (overall points) that counts.")


def eval_argv(spec: CurveSpec, gguf: Path, out: Path) -> list[str]:
    """The ``simrl wm eval`` command scoring ``gguf`` (label ``checkpoint``) into ``out``."""
    return [sys.executable, "-m", "simrl.cli.main", "wm", "eval", "--trajectories", str(spec.trajectories),
            "--world", str(spec.world), "--world-model", f"checkpoint=llamacpp:{gguf}", "--no-baselines",
            "--max-transitions", str(spec.transitions), "--wm-max-tokens", str(spec.max_tokens),
            "--wm-n-ctx", str(spec.n_ctx), "--wm-tools", spec.tools, "--concurrency", "1", "--out", str(out)]


def score_checkpoint(spec: CurveSpec, gguf: Path, out: Path) -> dict[str, Any]:
    """Run :func:`eval_argv`; ``{overall, ci, unparsed, n}`` of its ``scores.json``.

    Raises:
        SimrlError: the evaluation failed (its last output lines in the message).
    """
    done = subprocess.run(eval_argv(spec, gguf, out), capture_output=True, text=True, env=os.environ.copy())
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise SimrlError(f"the held-out fidelity of {gguf.name} could not be measured (wm eval exit code "
                         f"{done.returncode}):\n{tail}")
    entry = json.loads((out / "scores.json").read_text(encoding="utf-8"))["checkpoint"]
    return {"overall": entry["overall"], "ci": entry.get("ci", {}).get("overall"), "unparsed": entry["unparsed"],
            "n": entry["n"]}


def load_curve(out: Path) -> list[dict[str, Any]]:
    """The points of ``OUT/curve.json`` so far (``[]`` when none)."""
    path = out / CURVE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def best_point(curve: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The point with the highest ``overall`` (the earliest of equals), or None for an empty curve."""
    return max(curve, key=lambda p: (p["overall"], -p["step"])) if curve else None


def should_stop(curve: list[dict[str, Any]], patience: int, min_delta: float) -> bool:
    """True when the last ``patience`` points all fail to beat every earlier point by more than ``min_delta``.

    >>> pts = [{"step": s, "overall": v} for s, v in [(1, 10.0), (2, 30.0), (3, 29.0), (4, 30.0)]]
    >>> should_stop(pts, 2, 0.0), should_stop(pts[:3], 2, 0.0)
    (True, False)
    """
    if len(curve) <= patience:
        return False
    before = max(p["overall"] for p in curve[:-patience])
    return all(p["overall"] <= before + min_delta for p in curve[-patience:])


def _write(out: Path, curve: list[dict[str, Any]]) -> None:
    tmp = out / f"{CURVE}.tmp"
    tmp.write_text(json.dumps(curve, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / CURVE)


def curve_callback(spec: CurveSpec, out: Path, base_gguf: Path) -> Any:
    """A ``transformers.TrainerCallback`` that scores each saved checkpoint (see the module docstring)."""
    from transformers import TrainerCallback

    from simrl.wm.gguf_export import export_gguf

    folder = out / "curve"
    folder.mkdir(parents=True, exist_ok=True)

    class Curve(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            step = state.global_step
            curve = [p for p in load_curve(out) if p["step"] < step]  # a resumed run re-scores what it redoes
            gguf = folder / f"step-{step}.gguf"
            export_gguf(Path(args.output_dir) / f"checkpoint-{step}", base_gguf, gguf)
            point = {"step": step, **score_checkpoint(spec, gguf, folder / f"step-{step}"), "gguf": gguf.name}
            print(f"step {step}: held-out fidelity {point['overall']} (95% CI {point['ci']}, unparsed "
                  f"{point['unparsed']}/{point['n']})", file=sys.stderr, flush=True)
            best = best_point(curve + [point])
            for p in curve + [point]:  # keep the best checkpoint's GGUF only
                if p is not best and (folder / p["gguf"]).exists():
                    (folder / p["gguf"]).unlink()
            _write(out, curve + [point])
            if should_stop(curve + [point], spec.patience, spec.min_delta):
                print(f"held-out fidelity has not improved for {spec.patience} checkpoints: stopping at step {step}",
                      file=sys.stderr, flush=True)
                control.should_training_stop = True
            return control

    return Curve()


def finish(out: Path) -> dict[str, Any]:
    """After training: ``OUT/best.gguf`` from the best point; ``{"curve": [...], "best": point}`` for the manifest.

    Raises:
        SimrlError: the curve is empty (no checkpoint was saved: lower --save-every).
    """
    curve = load_curve(out)
    best = best_point(curve)
    if best is None:
        raise SimrlError("no checkpoint was scored: --save-every is larger than the run; lower it")
    source = out / "curve" / best["gguf"]
    if source.exists():
        shutil.copyfile(source, out / f"{BEST}.tmp")
        (out / f"{BEST}.tmp").replace(out / BEST)
    return {"curve": curve, "best": best | {"gguf": BEST}}
