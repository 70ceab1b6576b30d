"""The TRL trainer (``trainer.kind: trl``): an LLM policy trained by TRL's GRPO on one node, CPU or one GPU.

:func:`train_arm_trl` keeps :func:`simrl.trainers.embedded.train_arm`'s contract and run folder, and
hands the optimisation to ``trl.GRPOTrainer`` (TRL 1.16):

1. the world and the arm's environment as the embedded trainer has them (:mod:`simrl.experiment.runs`);
   the schedule's curriculum is read at progress ``(step - 1) / steps``;
2. the policy: ``policy.model`` (a local folder, a cached hub id, or ``smollm2``: the packaged
   SmolLM2-135M-Instruct GGUF; :func:`simrl.policies.hf_policy.load_model`), full fine-tuning or a
   LoRA adapter (``trainer.trl.lora_rank`` > 0, PEFT, every linear layer);
3. GRPO: each step TRL samples ``budget.batch`` train tasks (the dataset's prompts are task ids) x
   ``budget.group_size`` (``num_generations``); its rollout hook (:class:`simrl.trainers.trl_rollout.TrlRollout`)
   runs each as a multi-turn simrl episode and returns the tokens with environment tokens masked out of
   the loss; the reward is the environment's episode reward (None for an ``env_failure`` episode:
   left out of its group). One optimizer step per generation batch (``gradient_accumulation_steps=1``);
   ``beta`` (the KL penalty towards the initial model) is ``trainer.kl_coef`` (0 by default; TRL then keeps
   no reference model);
4. the run folder: ``recipe.yaml``, ``metrics.jsonl`` (:class:`~simrl.trainers.lifecycle.StepMetrics`; loss
   and grad norm from TRL's log), ``trajectories.jsonl``; TRL checkpoints ``checkpoints/checkpoint-N``
   (model or adapter, optimizer, scheduler, RNG, trainer state; every ``checkpoint_every`` steps and at the
   end, ``keep_checkpoints`` kept) with ``checkpoints/latest`` naming the newest complete one (written
   atomically after it is saved); ``final/`` (``save_pretrained``: the model, or the LoRA adapter, and the
   tokenizer); ``summary.json``; the held-out evaluation in the real environment with
   :class:`~simrl.policies.hf_policy.HFPolicy` (:func:`simrl.experiment.heldout.evaluate_heldout`).

Resume continues from the newest complete checkpoint (TRL's ``resume_from_checkpoint``), cutting the
logs back to it. ``trainer.trl.device: auto`` picks CUDA when available; ``use_vllm`` (TRL's colocated
vLLM engine) needs CUDA and vLLM.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.experiment import locks, runs
from simrl.experiment.heldout import evaluate_heldout
from simrl.experiment.recipe import Recipe
from simrl.trainers.lifecycle import (
    Progress,
    RunSummary,
    begin_run,
    finish_run,
    format_metrics,
    measure_step,
    read_history,
)

FINAL = "final"
"""The trained model's folder inside a run folder."""


def resolve_device(recipe: Recipe) -> str:
    """``cpu`` or ``cuda`` for ``trainer.trl.device`` (auto: cuda if available).

    Raises:
        SimrlError: cuda asked for but not available; ``use_vllm`` without cuda.
    """
    import torch

    opts = recipe.trainer.trl
    device = opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SimrlError("trainer.trl.device is cuda but torch sees no CUDA device; set device: auto or cpu")
    if opts.use_vllm and device != "cuda":
        raise SimrlError("trainer.trl.use_vllm needs a CUDA GPU (vLLM generates on the GPU); set use_vllm: false "
                         "to generate with transformers on the CPU")
    return device


def load_policy(recipe: Recipe, checkpoint: Path | None, *, seed: int = 0) -> Any:
    """The trainer registry's ``load_policy`` hook: an :class:`~simrl.policies.hf_policy.HFPolicy` of the model
    folder ``checkpoint`` (a run's ``final/`` or ``checkpoints/checkpoint-N``: a model or a LoRA adapter), or with
    None of the untrained ``policy.model`` (``seed`` is not used: the model's weights are its own), on
    ``trainer.trl.device``.

    Raises:
        SimrlError: not a Hugging Face model or adapter folder, a model that cannot be loaded, a device that is
            not there (:func:`resolve_device`).
    """
    from simrl.policies.hf_policy import HFPolicy

    p = recipe.policy
    options = {"device": resolve_device(recipe), "temperature": p.temperature,
               "max_tokens_per_turn": p.max_tokens_per_turn}
    return HFPolicy.from_folder(checkpoint, **options) if checkpoint is not None else HFPolicy.load(p.model, **options)


def grpo_config(recipe: Recipe, files: runs.RunFiles, seed: int, device: str) -> Any:
    """The ``trl.GRPOConfig`` of a run (recipe fields first, then ``trainer.trl.options`` over them).

    The trackers of ``logging.report_to`` become ``report_to``, with the run named ``<arm>-seed<S>``
    (the arm is the run folder's parent, ``OUT/<arm>/seed-<S>``) in ``logging.project``; trackio stays
    local (no Space is frozen or synced after training). Their group and folders come from
    :meth:`simrl.experiment.tracking.RunTracking.env`, set while the trainer runs.

    Raises:
        SimrlError: an option GRPOConfig does not have, or a value it rejects.
    """
    from trl import GRPOConfig

    from simrl.experiment.tracking import run_tracking

    b, tc, p = recipe.budget, recipe.trainer, recipe.policy
    track = run_tracking(recipe, files.root.parent.name, seed, files.root.parent.parent)
    fields: dict[str, Any] = dict(
        output_dir=str(files.checkpoints), max_steps=b.steps, per_device_train_batch_size=b.batch * b.group_size,
        num_generations=b.group_size, gradient_accumulation_steps=1, learning_rate=tc.lr, max_grad_norm=tc.grad_clip,
        logging_steps=1, save_strategy="steps", save_steps=tc.checkpoint_every, save_total_limit=tc.keep_checkpoints,
        report_to=list(track.backends) or "none", run_name=track.name, project=track.project, seed=seed, data_seed=seed, use_cpu=device == "cpu", bf16=False, fp16=False,
        gradient_checkpointing=False, temperature=p.temperature, max_completion_length=p.max_response_tokens,
        beta=tc.kl_coef, disable_tqdm=True, dataloader_num_workers=0, use_vllm=tc.trl.use_vllm)
    if tc.trl.use_vllm:  # the engine holds one episode's context, not the model's full window
        fields.update(vllm_mode="colocate", vllm_max_model_length=p.max_prompt_tokens + p.max_response_tokens)
    if "trackio" in track.backends:
        fields.update(trackio_static_space_id=False)  # local only: no Space made after training
    fields.update(tc.trl.options)
    if fields.get("use_vllm") and (fields.get("vllm_mode") != "colocate" or fields.get("vllm_enable_sleep_mode")):
        raise SimrlError("trainer.trl.options: the rollout hook generates with TRL's colocated vLLM engine while "
                         "it is awake; remove vllm_mode / vllm_enable_sleep_mode from the options")
    try:
        return GRPOConfig(**fields)
    except (TypeError, ValueError) as err:
        raise SimrlError(f"trainer.trl.options: {err} (options are trl.GRPOConfig fields)") from err


def latest_trl_checkpoint(files: runs.RunFiles) -> Path | None:
    """The newest complete ``checkpoint-N`` folder: ``latest`` first, then the others newest first.

    Complete = its ``trainer_state.json`` (the last file TRL writes) parses.
    """
    root = files.checkpoints
    pointer = root / "latest"
    candidates = [root / pointer.read_text(encoding="utf-8").strip()] if pointer.is_file() else []
    found = [(int(p.name.split("-")[1]), p) for p in root.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    candidates += [p for _, p in sorted(found, reverse=True)]
    for path in candidates:
        try:
            _checkpoint_step(path)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return path
    return None


def resume_step(files: runs.RunFiles) -> int | None:
    """The step a resume of the run continues from (its newest complete checkpoint), or None."""
    if not files.checkpoints.is_dir():
        return None
    ckpt = latest_trl_checkpoint(files)
    return _checkpoint_step(ckpt) if ckpt is not None else None


def _checkpoint_step(path: Path) -> int:
    """``global_step`` of a TRL checkpoint folder's ``trainer_state.json``."""
    return int(json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])


def _callback(rollout: Any, files: runs.RunFiles, recipe: Recipe, report: Progress, wall0: float) -> Any:
    """A ``TrainerCallback``: logs each step (trajectories, then metrics) and points ``latest`` at each checkpoint.

    With ``num_iterations`` > 1 TRL updates several times on one generation batch (it computes the old
    policy's log-probabilities itself); the episodes are logged once, at the first step that trains on
    them, and the later steps' rows count no episodes (their reward is the same batch's).
    """
    from transformers import TrainerCallback

    tc, steps = recipe.trainer, recipe.budget.steps
    t0 = time.perf_counter()

    class RunLog(TrainerCallback):
        logged = 0  # the rollout step whose episodes were logged last

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs or not rollout.last:
                return
            step, made = state.global_step, rollout.last_step
            trajs = [e.trajectory for e in rollout.last]
            m = measure_step(step, (made - 1) / steps, trajs, float(logs["loss"]), float(logs.get("grad_norm", 0.0)),
                              None, wall0 + time.perf_counter() - t0, group_size=recipe.budget.group_size)
            if made == self.logged:  # num_iterations > 1: another update on episodes an earlier step logged
                m = m.model_copy(update={"episodes": 0, "valid_episodes": 0, "env_failures": 0, "perturbations": 0})
            else:
                self.logged = made
                stride = max(1, len(trajs) // max(1, tc.trajectories_per_step))
                with files.trajectories.open("a", encoding="utf-8") as f:
                    for traj in trajs[::stride][:tc.trajectories_per_step]:
                        traj.info.update(train_step=step)
                        f.write(traj.model_dump_json() + "\n")
            with files.metrics.open("a", encoding="utf-8") as f:  # after the trajectories: a logged step is complete
                f.write(m.model_dump_json() + "\n")
            report(step, steps, format_metrics(m))

        def on_save(self, args, state, control, **kwargs):
            runs.write_atomic(files.checkpoints / "latest", f"checkpoint-{state.global_step}\n")

    return RunLog()


def run_config_callback(track: Any) -> Any:
    """A ``TrainerCallback`` that adds simrl's run config (recipe, arm, seed, group, settings) to the W&B and
    trackio runs TRL's integrations started (they record TRL's arguments only)."""
    from transformers import TrainerCallback

    class RunConfig(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if "wandb" in track.backends:
                import wandb

                if wandb.run is not None:
                    wandb.run.config.update(track.config, allow_val_change=True)
            if "trackio" in track.backends:
                import trackio

                trackio.config.update(track.config, allow_val_change=True)

    return RunConfig()


def _started(files: runs.RunFiles) -> bool:
    return files.started() or any(files.checkpoints.glob("checkpoint-*"))


def _dataset(tasks: list, batch: int) -> Any:
    """Prompts = task ids, each task at least once and at least ``batch`` rows (a step needs ``batch`` prompts)."""
    from datasets import Dataset

    rows = [{"prompt": t.task_id} for t in tasks]
    while len(rows) < batch:
        rows += rows[:batch - len(rows)]
    return Dataset.from_list(rows)


def _trainer(recipe: Recipe, arm: str, seed: int, files: runs.RunFiles, world: Path, device: str) -> tuple[Any, Any]:
    """``(GRPOTrainer, TrlRollout)`` for a run."""
    from trl import GRPOTrainer

    from simrl.policies.hf_policy import HFPolicy, load_model
    from simrl.trainers.trl_rollout import TrlRollout, env_reward

    p, b, opts = recipe.policy, recipe.budget, recipe.trainer.trl
    config = grpo_config(recipe, files, seed, device)
    model, tokenizer = load_model(p.model, device=device)
    peft_config = None
    if opts.lora_rank > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(r=opts.lora_rank, lora_alpha=opts.lora_alpha, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    tasks = runs.world_tasks(recipe, world, "train")
    policy = HFPolicy(model, tokenizer, greedy=False, temperature=p.temperature, max_tokens_per_turn=p.max_tokens_per_turn)
    arm_cfg = recipe.arm(arm)
    rollout = TrlRollout(
        policy, {t.task_id: t for t in tasks},
        lambda step: runs.arm_env_factory(recipe, arm_cfg, world, progress=(step - 1) / b.steps, seed=seed),
        max_turns=b.max_turns, max_prompt_tokens=p.max_prompt_tokens, max_response_tokens=p.max_response_tokens,
        seed=seed, concurrency=recipe.trainer.concurrency)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL 1.16: we know
    trainer = GRPOTrainer(model=model, reward_funcs=[env_reward], args=config, train_dataset=_dataset(tasks, b.batch),
                          processing_class=tokenizer, peft_config=peft_config, rollout_func=rollout)
    policy.model = trainer.model  # the PEFT-wrapped model when LoRA is on
    return trainer, rollout


def save_final(trainer: Any, tokenizer: Any, folder: Path) -> None:
    """Write the trained model (or LoRA adapter) and tokenizer to ``folder``, replacing it as a whole."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def train_arm_trl(recipe: Recipe, arm: str, seed: int, out_dir: str | Path, *, resume: bool = False,
                  progress: Progress | None = None, worlds: str | Path | None = None,
                  run_eval: bool = True) -> RunSummary:
    """Train one arm x seed of ``recipe`` with TRL's GRPO; returns (and writes) its summary.

    Arguments as :func:`simrl.trainers.embedded.train_arm`.

    Raises:
        SimrlError: trainer kind other than ``trl``; a warm start or entropy bonus (embedded-trainer
            options); an unknown arm; ``out_dir`` already holds a run and ``resume`` is False, or another
            process writes it (:mod:`simrl.experiment.locks`); bad
            device / vLLM settings or GRPOConfig options; a model that cannot be loaded.
    """
    if recipe.trainer.kind != "trl":
        raise SimrlError(f"train_arm_trl runs trainer.kind trl recipes; this one is {recipe.trainer.kind!r} "
                         "(run it with `simrl train`, which picks the trainer)")
    if (recipe.warm_start is not None and recipe.warm_start.demos) or recipe.trainer.entropy_coef:
        raise SimrlError("warm_start and trainer.entropy_coef are embedded-trainer options; set warm_start.demos: 0 "
                         "and entropy_coef: 0 for a trl recipe")
    recipe.arm(arm)
    device = resolve_device(recipe)
    files = runs.RunFiles(Path(out_dir))
    with locks.writing_run(files.root):  # one writer per run folder; its temporary files under it
        return _train_arm(recipe, arm, seed, files, device, resume=resume, progress=progress, worlds=worlds,
                          run_eval=run_eval)


def _train_arm(recipe: Recipe, arm: str, seed: int, files: runs.RunFiles, device: str, *, resume: bool,
               progress: Progress | None, worlds: str | Path | None, run_eval: bool) -> RunSummary:
    from transformers.trainer_callback import PrinterCallback

    from simrl.experiment.tracking import check_installed, run_tracking, scoped_env

    finished = begin_run(recipe, files, started=_started(files), resume=resume, arm=arm)
    if finished is not None:
        return finished
    worlds = Path(worlds) if worlds is not None else files.root / "worlds"
    report = progress or (lambda done, total, message: None)
    world = runs.training_world(recipe, worlds)
    ckpt = latest_trl_checkpoint(files) if resume else None
    start = _checkpoint_step(ckpt) if ckpt is not None else 0
    runs.rewind_logs(files, start if ckpt is not None else None)
    done = read_history(files)
    track = run_tracking(recipe, arm, seed, files.root.parent.parent)
    check_installed(track.backends)
    with scoped_env(track.env()):  # the trackers' group and folders, read when TRL starts them
        trainer, rollout = _trainer(recipe, arm, seed, files, world, device)
        trainer.remove_callback(PrinterCallback)  # the run log and the progress bar report steps, not raw dicts
        trainer.add_callback(run_config_callback(track))
        trainer.add_callback(_callback(rollout, files, recipe, report, done[-1].wall_s if done else 0.0))
        report(start, recipe.budget.steps, f"step {start}/{recipe.budget.steps}")
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    save_final(trainer, rollout.policy.tokenizer, files.root / FINAL)
    evaluation = None
    if run_eval:
        report(recipe.budget.steps, recipe.budget.steps, "evaluating on held-out real tasks")
        rollout.policy.model = trainer.model
        evaluation = evaluate_heldout(recipe, rollout.policy, files, world, worlds)
    return finish_run(recipe, arm, seed, files, read_history(files),
                      resumed_from=start if ckpt is not None else None, warm_start=None, evaluation=evaluation)
