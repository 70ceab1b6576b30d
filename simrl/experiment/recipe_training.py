"""Recipe sections that say what trains and how much: policy, trainer, budget, warm start, evaluation.

Part of :mod:`simrl.experiment.recipe` (import the models from there): the trainable policy
(:class:`PolicyConfig`), the trainer and its options (:class:`TrainerConfig` with
:class:`VerlOptions` / :class:`TrlOptions`), the :class:`Budget`, the behaviour-cloning
:class:`WarmStart`, the held-out :class:`Evaluation` and the experiment trackers
(:class:`Logging`). Shared by every arm of a recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from simrl.choices import Split
from simrl.experiment.recipe_arms import STRICT


class PolicyConfig(BaseModel):
    """The trainable policy.

    ``scorer``: :class:`simrl.policies.scorer.ScorerPolicy` (DRRN-style; He et al., 2016), the embedded
    trainer's CPU policy. ``llm``: a Hugging Face causal LM (``model``: an id or a local folder) that
    writes tool calls itself, trained by TRL (one node) or verl (a Ray cluster).
    """

    model_config = STRICT
    kind: Literal["scorer", "llm"] = Field(default="scorer", description="Policy kind (scorer: the candidate "
                                                                         "scorer; llm: a causal language model).")
    dim: int = Field(default=64, ge=4, le=4096, description="scorer: embedding width of states and candidate actions.")
    buckets: int = Field(default=1 << 15, ge=64, le=1 << 24, description="scorer: hashed n-gram buckets.")
    temperature: float = Field(default=1.0, gt=0, description="Softmax / sampling temperature while training.")
    explore_kinds: float = Field(default=0.0, ge=0, lt=1, description=(
        "scorer: share of training actions drawn kind first: a candidate kind (call, continue, repeat, drop, "
        "answer) uniformly among those present, then the policy's own choice within it (0: plain softmax)."))
    init_scale: float = Field(default=1.0, ge=0, le=1, description=(
        "scorer: standard deviation of the two embedding tables' initial weights (1: torch's N(0, 1)). At 0 a "
        "token the warm start never saw (a cursor's field, a fault's status, a continuation's tag) starts with no "
        "direction of its own (it only dilutes the mean of its bag), at every seed, instead of a random one: what "
        "the policy does on meeting an edge case is then learned, not drawn with its seed."))
    model: str | None = Field(default=None, description="llm: Hugging Face model id or local folder "
                                                        "(e.g. Qwen/Qwen3-4B-Instruct-2507).")
    max_prompt_tokens: int = Field(default=4096, ge=64, description="llm: longest prompt (task + tool schemas).")
    max_response_tokens: int = Field(default=4096, ge=16, description="llm: longest response of an episode, all "
                                                                      "turns and tool observations included.")
    max_tokens_per_turn: int = Field(default=512, ge=8, description="llm: longest generation per turn.")

    @model_validator(mode="after")
    def _model(self) -> PolicyConfig:
        if self.kind == "llm" and not self.model:
            raise ValueError("an llm policy needs model: a Hugging Face id or a local model folder")
        if self.kind == "scorer" and self.model:
            raise ValueError("model is an llm option; set kind: llm (trainer trl or verl) or drop model")
        return self


class VerlOptions(BaseModel):
    """verl settings (``trainer.kind: verl``): cluster shape, rollout engine, extra Hydra overrides."""

    model_config = STRICT
    nnodes: int = Field(default=1, ge=1, description="Nodes of the Ray cluster (trainer.nnodes).")
    n_gpus_per_node: int = Field(default=8, ge=1, description="GPUs per node (trainer.n_gpus_per_node).")
    rollout: Literal["vllm", "sglang"] = Field(default="vllm", description="Rollout engine "
                                                                        "(actor_rollout_ref.rollout.name).")
    tensor_parallel_size: int = Field(default=1, ge=1, description="Rollout tensor parallelism.")
    gpu_memory_utilization: float = Field(default=0.5, gt=0, le=1, description="Rollout engine GPU memory share.")
    max_assistant_turns: int | None = Field(default=None, ge=1, description="Assistant turns per trajectory "
                                                                            "(null: budget.max_turns).")
    overrides: list[str] = Field(default_factory=list, description="Extra Hydra overrides for "
                                                                   "verl.trainer.main_ppo, appended last "
                                                                   "(e.g. trainer.logger=[console,wandb]).")


class TrlOptions(BaseModel):
    """TRL settings (``trainer.kind: trl``): one node, CPU or one GPU."""

    model_config = STRICT
    lora_rank: int = Field(default=0, ge=0, description="LoRA rank (0: train every weight).")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA alpha.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where the policy runs "
                                                                              "(auto: cuda if available).")
    use_vllm: bool = Field(default=False, description="Generate with vLLM (colocated; GPU only).")
    options: dict[str, Any] = Field(default_factory=dict, description="Further trl.GRPOConfig fields "
                                                                      "(e.g. beta, loss_type).")


@dataclass(frozen=True)
class TrainerKind:
    """One trainer (``trainer.kind``): the module that trains a run, and what the rest of simrl needs to know.

    Attributes:
        description: one line (the recipe field's help).
        policy: the ``policy.kind`` it trains (``scorer`` or ``llm``).
        load_policy: ``"module:function"`` loading the policy it trains: ``function(recipe, checkpoint, *, seed)
            -> Policy``, the policy stored at ``checkpoint`` (a file or folder inside a run folder), or with
            ``checkpoint`` None the untrained policy a run of ``seed`` starts from (the ``untrained`` baseline);
            raises :class:`~simrl.errors.SimrlError` saying what is missing. ``simrl eval`` and ``simrl ablate``
            load every run and baseline through it (:func:`simrl.experiment.heldout.load_policy`).
        final: the trained policy's file or folder inside a run folder (what ``load_policy`` reads at the end).
        train: ``"module:function"`` training one arm x seed into a run folder:
            ``function(recipe, arm, seed, run_dir, *, resume, progress, worlds, run_eval) -> RunSummary``
            (every trainer starts, resumes and finishes its run with :mod:`simrl.trainers.lifecycle`).
        launch: ``"module:function"`` of a trainer that writes a job and runs or submits it instead (verl):
            ``function(recipe, arm, seed, run_dir, *, worlds, dry_run, ray_address, resume, console, run_eval)``.
        resume_step: ``"module:function"``: ``(RunFiles) -> step | None``, the step a resume continues from
            (None: the embedded trainer's ``checkpoints/step-N.pt``).
        ablate: ``simrl ablate`` can compare its runs (it trains them in the ``simrl train`` process).
    """

    description: str
    policy: str
    load_policy: str
    final: str = "final.pt"
    train: str | None = None
    launch: str | None = None
    resume_step: str | None = None
    ablate: bool = False


TRAINERS: dict[str, TrainerKind] = {
    "embedded": TrainerKind("the in-process CPU GRPO trainer (simrl.trainers.embedded)", "scorer",
                            "simrl.trainers.embedded:load_policy", train="simrl.trainers.embedded:train_arm",
                            ablate=True),
    "trl": TrainerKind("TRL's GRPO trainer on one node (simrl.trainers.trl)", "llm", "simrl.trainers.trl:load_policy",
                       final="final", train="simrl.trainers.trl:train_arm_trl",
                       resume_step="simrl.trainers.trl:resume_step", ablate=True),
    "verl": TrainerKind("verl on a Ray cluster, GPUs (simrl.trainers.verl)", "llm",
                        "simrl.trainers.verl.evaluate:load_policy", final="final",
                        launch="simrl.trainers.verl.launch:train_verl"),
}
"""The trainer registry: ``trainer.kind`` -> :class:`TrainerKind`. A new trainer is its module, an entry here
(docs/plugins.md) and, when it has any, its options below (every list of trainers, and the policy each trains, is read from this registry)."""


class TrainerConfig(BaseModel):
    """Which trainer runs the arm, and its optimiser settings."""

    model_config = STRICT
    kind: str = Field(
        default="embedded", description="; ".join(f"{k}: {t.description}, {t.policy} policy" for k, t in TRAINERS.items())
        + ".")
    lr: float = Field(default=0.003, gt=0, description="Adam learning rate of the GRPO updates.")
    grad_clip: float = Field(default=1.0, gt=0, description="Gradient-norm clip per update.")
    entropy_coef: float = Field(default=0.0, ge=0, description="Entropy bonus weight (0: none).")
    kl_coef: float = Field(default=0.0, ge=0, le=10, description=(
        "embedded: weight of GRPO's KL penalty towards the warm start (exact KL over the candidates at each "
        "visited decision point; 0: none). A restoring force when every episode of a group fails alike and the "
        "advantages give no gradient."))
    credit: Literal["episode", "gigpo"] = Field(default="episode", description=(
        "Credit assignment: episode (GRPO: every turn gets its episode's group-relative advantage) or gigpo "
        "(plus GiGPO's step-level advantage: turns that acted from the same state in a group are compared by "
        "their discounted return; Feng et al. 2025, arXiv:2505.10978)."))
    step_weight: float = Field(default=1.0, ge=0, description="gigpo: weight of the step-level advantage.")
    gamma: float = Field(default=0.95, gt=0, le=1, description="gigpo: discount of the per-turn returns.")
    checkpoint_every: int = Field(default=5, ge=1, description="Steps between checkpoints (one more at the end).")
    keep_checkpoints: int = Field(default=2, ge=1, description="Newest checkpoints kept (older ones are deleted; "
                                                               "each holds the policy and Adam's two moments).")
    trajectories_per_step: int = Field(default=4, ge=0, description="Episodes per step written to "
                                                                     "trajectories.jsonl (a sample).")
    concurrency: int = Field(default=8, ge=1, description="Episodes in flight at once.")
    verl: VerlOptions = Field(default_factory=VerlOptions, description="verl options (kind verl).")
    trl: TrlOptions = Field(default_factory=TrlOptions, description="TRL options (kind trl).")

    @field_validator("kind")
    @classmethod
    def _known(cls, kind: str) -> str:
        if kind not in TRAINERS:  # a field validator: the error names trainer.kind
            raise ValueError(f"{kind!r} is not a trainer; known: {', '.join(TRAINERS)}")
        return kind


class Budget(BaseModel):
    """How much training: ``steps`` updates of ``batch`` tasks x ``group_size`` episodes each."""

    model_config = STRICT
    steps: int = Field(ge=1, description="GRPO updates.")
    group_size: int = Field(default=4, ge=2, description="Episodes per task per step (the GRPO group).")
    batch: int = Field(default=4, ge=1, description="Train tasks per step.")
    max_turns: int = Field(default=12, ge=1, description="Turn limit per episode.")
    task_weights: dict[str, int] = Field(
        default_factory=dict,
        description="How many times a train task enters the pool that each step's tasks are drawn from, by task "
                    "property (read / write / multi_page: one scripted-expert episode per train task in the real "
                    "environment, before training); a task with several named properties gets the product; "
                    "{} (default): each task once.")

    @field_validator("task_weights")
    @classmethod
    def _known_properties(cls, value: dict[str, int]) -> dict[str, int]:
        from simrl.evaluation.results import TASK_SUBSETS

        for name, weight in value.items():
            if name not in TASK_SUBSETS:
                raise ValueError(f"unknown task property {name!r}: use one of {', '.join(TASK_SUBSETS)}")
            if not 1 <= weight <= 100:
                raise ValueError(f"{name}: a weight must be an integer in 1..100, got {weight}")
        return value


class WarmStart(BaseModel):
    """Behaviour cloning from scripted-expert demonstrations collected in the REAL environment.

    Only episodes that met no edge case (no result page beyond the first, no fault) are demonstrations,
    spread evenly over the task templates: the warm start teaches the tools, not the recovery skills an
    ablation compares (:func:`simrl.trainers.warm_start.warm_start`).
    """

    model_config = STRICT
    demos: int = Field(default=0, ge=0, description="Expert demonstrations cloned, edge-case-free episodes of "
                                                    "train tasks stratified over templates (0: no warm start).")
    epochs: int = Field(default=5, ge=1, description="Passes over the demonstrations.")
    lr: float = Field(default=0.01, gt=0, description="Learning rate of behaviour cloning.")


class Evaluation(BaseModel):
    """Held-out evaluation in the real environment (:mod:`simrl.experiment.heldout`, :mod:`simrl.evaluation`)."""

    model_config = STRICT
    split: Split = Field(default="test", description="Task split of the training world.")
    trials: int = Field(default=1, ge=1, le=1000, description="Episodes per task (Avg@N / Pass@N).")
    max_tasks: int | None = Field(default=None, ge=1, description="At most this many tasks per world (null: all).")
    greedy: bool = Field(default=True, description="Act greedily (argmax) instead of sampling.")
    every: int | None = Field(default=None, ge=1, description=(
        "embedded: also evaluate every this many steps (greedy, first trial's episodes of the same tasks) into "
        "curve.jsonl, so learning curves compare arms in the same real environment (null: only at the end)."))


TRACKERS = ("tensorboard", "trackio", "wandb")
"""Experiment trackers a recipe's ``logging.report_to`` may name (:mod:`simrl.experiment.tracking` runs them)."""


class Logging(BaseModel):
    """Experiment trackers fed beside ``metrics.jsonl`` (which stays the source of truth).

    Each run is one tracker run named ``<arm>-seed<S>``, with the arm, seed and recipe as its config,
    in the group ``group`` (the ablation). Offline modes are the tools' own: ``WANDB_MODE=offline``,
    trackio without a Space (local by default).
    """

    model_config = STRICT
    report_to: list[Literal["tensorboard", "trackio", "wandb"]] = Field(
        default_factory=list, description="Trackers to feed (none by default): tensorboard, trackio, wandb; "
                                          "`--report-to` of simrl train / ablate overrides it.")
    project: str | None = Field(default=None, min_length=1, max_length=128,
                                description="Project name in trackio / W&B / verl (null: simrl-<recipe name>).")
    group: str | None = Field(default=None, min_length=1, max_length=128,
                              description="Group of the runs (null: the output folder's name, i.e. the ablation).")
    dir: str | None = Field(default=None, description="Folder of the trackers' local files, relative to the working "
                                                      "directory (null: OUT/tracking): tensorboard/<arm>/seed-<S>/ "
                                                      "event files, trackio/ (its database), wandb/ (W&B's runs).")

    @model_validator(mode="after")
    def _distinct(self) -> Logging:
        if len(set(self.report_to)) != len(self.report_to):
            raise ValueError("report_to names a tracker twice")
        return self
