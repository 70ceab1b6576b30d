"""Held-out evaluation of a verl run: merge its newest checkpoint into a Hugging Face model, evaluate it.

verl writes FSDP checkpoints (``RUN/verl/checkpoints/global_step_N/actor/``: one
``model_world_size_W_rank_R.pt`` per rank, ``fsdp_config.json`` and a ``huggingface/`` folder with the
config and tokenizer; ``latest_checkpointed_iteration.txt`` names N). verl's own merger
(``python -m verl.model_merger merge --backend fsdp``, verl/model_merger/) turns one into a Hugging
Face model folder, ``RUN/final/``; that model is then evaluated like every simrl policy
(:func:`simrl.experiment.heldout.evaluate_heldout`: greedy, held-out REAL tasks of the training world's
``evaluation.split`` and the held-out worlds, files under ``RUN/eval/``) through
:class:`simrl.policies.hf_policy.HFPolicy`. ``simrl eval --checkpoint RUN/final`` repeats it later.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.experiment import runs
from simrl.experiment.recipe import Recipe
from simrl.trainers.verl.config import VerlFiles

FINAL = "final"
"""The merged model's folder inside a run folder (as the TRL trainer's ``final/``)."""


def latest_verl_checkpoint(files: VerlFiles) -> tuple[int, Path] | None:
    """``(step, actor folder)`` of the newest verl checkpoint, or None when there is none.

    The step is read from ``latest_checkpointed_iteration.txt`` (verl writes it after a checkpoint is
    complete); without it, the highest ``global_step_N`` with an ``actor/fsdp_config.json``.
    """
    root = files.checkpoints
    pointer = root / "latest_checkpointed_iteration.txt"
    steps: list[int] = []
    if pointer.is_file() and pointer.read_text(encoding="utf-8").strip().isdigit():
        steps.append(int(pointer.read_text(encoding="utf-8").strip()))
    found = sorted((int(p.name.rsplit("_", 1)[1]) for p in root.glob("global_step_*")
                    if p.name.rsplit("_", 1)[1].isdigit()), reverse=True)
    for step in steps + found:
        actor = root / f"global_step_{step}" / "actor"
        if (actor / "fsdp_config.json").is_file():
            return step, actor
    return None


def merge_checkpoint(actor: Path, target: Path, *, log: Path | None = None) -> Path:
    """Merge an FSDP ``actor`` checkpoint folder into a Hugging Face model folder ``target`` (verl's merger).

    Runs ``python -m verl.model_merger merge --backend fsdp --local_dir ACTOR --target_dir TARGET`` in a
    subprocess (its output appended to ``log`` when given).

    Raises:
        SimrlError: the merger failed (the message carries the end of its output).
    """
    argv = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(actor),
            "--target_dir", str(target)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if log is not None:
        with log.open("a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0 or not (target / "config.json").is_file():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SimrlError(f"merging the verl checkpoint {actor} into {target} failed (exit {done.returncode}):\n{tail}")
    return target


def evaluate_verl_run(recipe: Recipe, run_dir: Path, files: VerlFiles, *, worlds: Path,
                      device: str = "auto") -> dict[str, dict[str, float]]:
    """Merge the newest checkpoint of a finished verl run into ``run_dir/final`` and evaluate it.

    Args:
        recipe: the run's recipe (its ``evaluation`` and held-out worlds).
        run_dir: ``OUT/<arm>/seed-<seed>``; ``files`` its ``verl/`` job folder.
        worlds: the shared worlds folder.
        device: where the policy runs (auto: cuda if available).

    Returns:
        Evaluation label -> metrics (``all``, ``<split>``, ``heldout-seed<S>``), also written under
        ``run_dir/eval/``.

    Raises:
        SimrlError: the run has no checkpoint, or merging or loading the model failed.
    """
    from simrl.experiment.heldout import evaluate_heldout

    found = latest_verl_checkpoint(files)
    if found is None:
        raise SimrlError(f"no verl checkpoint under {files.checkpoints}: nothing to evaluate (checkpoints are written "
                         "every trainer.checkpoint_every steps and at the end)")
    _, actor = found
    final = merge_checkpoint(actor, Path(run_dir) / FINAL, log=files.log)
    policy: Any = load_policy(recipe, final, device=device)
    world = runs.training_world(recipe, worlds)
    return evaluate_heldout(recipe, policy, runs.RunFiles(Path(run_dir)), world, worlds)


def load_policy(recipe: Recipe, checkpoint: Path | None, *, seed: int = 0, device: str = "auto") -> Any:
    """The trainer registry's ``load_policy`` hook: an :class:`~simrl.policies.hf_policy.HFPolicy` (greedy) of a
    merged verl model folder (a run's ``final/``, written by :func:`evaluate_verl_run`), or with None of the
    untrained ``policy.model`` (``seed`` is not used: the model's weights are its own).

    Raises:
        SimrlError: ``checkpoint`` is not a Hugging Face model folder (verl's own FSDP checkpoints under
            ``RUN/verl/checkpoints`` are merged into ``RUN/final`` at the end of a run with evaluation; merge one
            with :func:`merge_checkpoint`), or the model cannot be loaded.
    """
    from simrl.policies.hf_policy import HFPolicy

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    options = {"device": device, "greedy": True, "max_tokens_per_turn": recipe.policy.max_tokens_per_turn}
    if checkpoint is None:
        return HFPolicy.load(str(recipe.policy.model), **options)
    if not (Path(checkpoint) / "config.json").is_file():
        raise SimrlError(f"{checkpoint}: not a merged Hugging Face model (no config.json); a verl run writes RUN/{FINAL} "
                         "by merging its newest checkpoint (RUN/verl/checkpoints/global_step_N/actor) when it "
                         "evaluates itself")
    return HFPolicy.from_folder(checkpoint, **options)
