"""Hydra overrides for ``python -m verl.trainer.main_ppo`` (verl 0.9.1) from one recipe arm.

No copy of verl's config tree (docs/design.md §5): verl composes its own ``ppo_trainer`` config and we
override the few keys a recipe decides, checked against the installed
``verl/trainer/config/_generated_ppo_trainer.yaml``. In order:

1. what the recipe says: GRPO (``algorithm.adv_estimator=grpo``), the datasets, batch
   (``data.train_batch_size`` = ``budget.batch`` tasks per step, ``actor_rollout_ref.rollout.n`` =
   ``budget.group_size`` episodes per task), prompt/response lengths, the model, learning rate,
   gradient clip, entropy bonus, sampling temperature, the rollout engine and its parallelism, the
   multi-turn tool loop (``tool_agent`` with the arm's tool config and turn limit), simrl's reward
   function, the cluster shape, ``budget.steps`` updates, checkpoints and logs under the run folder;
2. the adapters' own needs (:data:`simrl.trainers.verl.tools.REQUIRED_OVERRIDES`);
3. the recipe's ``trainer.verl.overrides``, last, so the user wins (Hydra keeps the last value of a key;
   :func:`last_wins` drops the earlier ones).

Choices that are ours (change them with ``trainer.verl.overrides``): no KL loss and no reference
model (the recipe has no KL term, as the embedded trainer), dynamic micro-batches by token count
(``actor.use_dynamic_bsz``), gradient checkpointing. ``trainer.logger`` is ``console`` plus the recipe's
``logging.report_to`` (verl's own tensorboard / trackio / wandb loggers; their group and folders are
environment variables of the job, :func:`job_env`). verl has no per-turn
generation limit, so ``policy.max_tokens_per_turn`` is not used here (the response budget
``policy.max_response_tokens`` bounds the whole episode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from simrl.errors import SimrlError
from simrl.experiment.recipe import Recipe

ENTRYPOINT = ("-m", "verl.trainer.main_ppo")
"""How Python starts verl's PPO/GRPO trainer (after the interpreter)."""

_PLAIN = re.compile(r"^[A-Za-z_/.][A-Za-z0-9_./:-]*$")
_KEYWORDS = {"true", "false", "null", "inf", "nan"}


@dataclass(frozen=True)
class VerlFiles:
    """The files of one verl job: ``RUN/verl/`` of a run folder (``OUT/<arm>/seed-<seed>/verl``).

    Attributes:
        root: the job folder; every path below lies in it.
        arm: the arm whose tool config the job uses.
    """

    root: Path
    arm: str

    @property
    def train(self) -> Path:
        """Train tasks (verl's RLHF parquet)."""
        return self.root / "train.parquet"

    @property
    def val(self) -> Path:
        """Validation tasks (verl's RLHF parquet)."""
        return self.root / "val.parquet"

    @property
    def tool_config(self) -> Path:
        """The arm's verl tool config (``tools-<arm>.yaml``): the only file that differs between arms."""
        return self.root / f"tools-{self.arm}.yaml"

    @property
    def recipe(self) -> Path:
        """The resolved recipe (every field, absolute paths)."""
        return self.root / "recipe.yaml"

    @property
    def overrides(self) -> Path:
        """The Hydra overrides, one per line."""
        return self.root / "overrides.txt"

    @property
    def command(self) -> Path:
        """The exact command (``bash command.sh`` runs it)."""
        return self.root / "command.sh"

    @property
    def log(self) -> Path:
        """stdout + stderr of a local run."""
        return self.root / "train.log"

    @property
    def checkpoints(self) -> Path:
        """verl's checkpoints (``trainer.default_local_dir``: ``global_step_N/``, ``latest_checkpointed_iteration.txt``)."""
        return self.root / "checkpoints"

    @property
    def rollouts(self) -> Path:
        """verl's rollout dumps (``trainer.rollout_data_dir``: ``<step>.jsonl``, the trajectories)."""
        return self.root / "rollouts"

    @property
    def hydra(self) -> Path:
        """Hydra's own output folder (``hydra.run.dir``) instead of ``./outputs/<date>``."""
        return self.root / "hydra"


def hydra_value(value: object) -> str:
    """One value in Hydra's override grammar: plain tokens as they are, others single-quoted.

    >>> hydra_value("/runs/a/train.parquet"), hydra_value(True), hydra_value("a b"), hydra_value(0.5)
    ('/runs/a/train.parquet', 'true', "'a b'", '0.5')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _KEYWORDS:
        return text
    return "'" + text.replace("'", "\\'") + "'"


def check_shape(recipe: Recipe) -> None:
    """Batch and parallelism must divide the cluster the way verl asserts; say how to fix it here.

    Raises:
        SimrlError: the step's episodes do not split evenly over the GPUs, or tensor parallelism does
            not divide a node's GPUs.
    """
    v, b = recipe.trainer.verl, recipe.budget
    gpus = v.nnodes * v.n_gpus_per_node
    episodes = b.batch * b.group_size
    if episodes % gpus:
        raise SimrlError(f"budget.batch x budget.group_size = {episodes} episodes per step must be a multiple of "
                         f"the GPUs (trainer.verl.nnodes x n_gpus_per_node = {gpus}); verl splits every step's "
                         "episodes evenly over them. Change budget.batch or budget.group_size.")
    if v.n_gpus_per_node % v.tensor_parallel_size:
        raise SimrlError(f"trainer.verl.tensor_parallel_size {v.tensor_parallel_size} must divide "
                         f"n_gpus_per_node {v.n_gpus_per_node} (a rollout replica lives on one node)")


def recipe_overrides(recipe: Recipe, arm: str, files: VerlFiles, *, seed: int = 0,
                     resume: bool = False) -> list[str]:
    """The overrides the recipe decides (step 1 of the module docstring), as ``key=value`` strings.

    Raises:
        SpecError: ``arm`` is not an arm of the recipe.
        SimrlError: the batch does not split over the GPUs, or tensor parallelism does not divide a node.
    """
    recipe.arm(arm)
    check_shape(recipe)
    p, t, b, v = recipe.policy, recipe.trainer, recipe.budget, recipe.trainer.verl
    tokens = p.max_prompt_tokens + p.max_response_tokens
    from simrl.experiment.tracking import run_tracking
    from simrl.trainers.verl.reward import REWARD_PATH

    track = run_tracking(recipe, arm, seed, files.root.parent.parent.parent)  # OUT of OUT/<arm>/seed-<S>/verl

    pairs: list[tuple[str, object]] = [
        ("algorithm.adv_estimator", "grpo"),
        ("algorithm.use_kl_in_reward", False),
        ("data.train_files", files.train),
        ("data.val_files", files.val),
        ("data.return_raw_chat", True),
        ("data.train_batch_size", b.batch),
        ("data.max_prompt_length", p.max_prompt_tokens),
        ("data.max_response_length", p.max_response_tokens),
        ("data.filter_overlong_prompts", True),
        ("data.seed", seed),
        ("actor_rollout_ref.model.path", p.model),
        ("actor_rollout_ref.model.use_remove_padding", True),
        ("actor_rollout_ref.model.enable_gradient_checkpointing", True),
        ("actor_rollout_ref.actor.optim.lr", t.lr),
        ("actor_rollout_ref.actor.grad_clip", t.grad_clip),
        ("actor_rollout_ref.actor.entropy_coeff", t.entropy_coef),
        ("actor_rollout_ref.actor.use_kl_loss", False),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", b.batch),
        ("actor_rollout_ref.actor.use_dynamic_bsz", True),
        ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu", max(tokens, 16384)),
        ("actor_rollout_ref.rollout.name", v.rollout),
        ("actor_rollout_ref.rollout.n", b.group_size),
        ("actor_rollout_ref.rollout.temperature", p.temperature),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", v.tensor_parallel_size),
        ("actor_rollout_ref.rollout.gpu_memory_utilization", v.gpu_memory_utilization),
        ("actor_rollout_ref.rollout.multi_turn.enable", True),
        ("actor_rollout_ref.rollout.multi_turn.tool_config_path", files.tool_config),
        ("actor_rollout_ref.rollout.multi_turn.max_assistant_turns", v.max_assistant_turns or b.max_turns),
        ("actor_rollout_ref.rollout.agent.default_agent_loop", _agent_name()),
        ("reward.custom_reward_function.path", REWARD_PATH),
        ("reward.custom_reward_function.name", "compute_score"),
        ("trainer.n_gpus_per_node", v.n_gpus_per_node),
        ("trainer.nnodes", v.nnodes),
        ("trainer.total_training_steps", b.steps),
        ("trainer.total_epochs", b.steps),  # >= 1 batch per epoch, so the step count is what stops it
        ("trainer.save_freq", t.checkpoint_every),
        ("trainer.max_actor_ckpt_to_keep", t.keep_checkpoints),
        ("trainer.test_freq", t.checkpoint_every),
        ("trainer.default_local_dir", files.checkpoints),
        ("trainer.rollout_data_dir", files.rollouts),
        ("trainer.resume_mode", "auto" if resume else "disable"),
        ("trainer.project_name", track.project),
        ("trainer.experiment_name", track.name),
        ("trainer.logger", "[" + ",".join(["console", *track.backends]) + "]"),
        ("hydra.run.dir", files.hydra),
    ]
    return [f"{k}={v if k == 'trainer.logger' else hydra_value(v)}" for k, v in pairs]


def _agent_name() -> str:
    from simrl.trainers.verl.data import AGENT_NAME

    return AGENT_NAME


def overrides(recipe: Recipe, arm: str, files: VerlFiles, *, seed: int = 0, resume: bool = False) -> list[str]:
    """Every Hydra override of the job: the recipe's, then the adapters', then ``trainer.verl.overrides``.

    Args:
        recipe: a loaded recipe with ``trainer.kind: verl`` (paths absolute, as :func:`load_recipe` makes them).
        arm: the arm name (grid arms included).
        files: the job's files (the overrides point at them; nothing is read or written here).
        seed: the training seed (data shuffling, experiment name).
        resume: continue from verl's newest checkpoint in ``files.checkpoints`` (``trainer.resume_mode=auto``);
            otherwise ``disable`` (a fresh run).

    Returns:
        ``key=value`` strings for ``python -m verl.trainer.main_ppo`` (Hydra grammar; not shell-quoted).

    Raises:
        SpecError / SimrlError: as :func:`recipe_overrides`.
    """
    from simrl.trainers.verl.tools import REQUIRED_OVERRIDES

    return last_wins([*recipe_overrides(recipe, arm, files, seed=seed, resume=resume), *REQUIRED_OVERRIDES,
                      *recipe.trainer.verl.overrides])


def last_wins(items: list[str]) -> list[str]:
    """Drop every override whose key is given again later (Hydra keeps the last value anyway; the
    command gets shorter and says what is used).

    >>> last_wins(["a=1", "b=2", "a=3"])
    ['b=2', 'a=3']
    """
    keys = [item.split("=", 1)[0] for item in items]
    return [item for i, (item, key) in enumerate(zip(items, keys)) if key not in keys[i + 1:]]


def job_env(recipe: Recipe, arm: str, seed: int, files: VerlFiles) -> dict[str, str]:
    """Environment variables of the job for verl's trackers: W&B's group and folder, verl's
    ``TENSORBOARD_DIR``, trackio's folder (:meth:`simrl.experiment.tracking.RunTracking.env`); empty without trackers."""
    from simrl.experiment.tracking import run_tracking

    return run_tracking(recipe, arm, seed, files.root.parent.parent.parent).env()
