"""Recipes: the YAML files in ``recipes/`` that describe a training experiment.

A recipe names a world, the environment every arm shares, the arms (real | world model | world model
+ perturbation schedule), the policy, the trainer, the budget, the warm start, the evaluation and the
seeds. The arms differ only in their environment (DESIGN.md §2): that is the experiment. Validated
once, here, by pydantic like world specs (:mod:`simrl.world.spec`): one help text per field (its
``description``), unknown fields rejected, impossible combinations caught with a message that says how
to fix them. :func:`load_recipe` turns every problem into a :class:`~simrl.errors.SpecError` with one
line per problem naming the field (``arms.real.schedule: ...``), then resolves the files it names
(world spec or folder, schedules) relative to the recipe's folder.

Example (``recipes/quickstart.yaml``)::

    name: quickstart
    world: {spec: ../worlds/tiny.yaml, seed: 0, entities: 600}
    env: {id: mcp-world}
    real: {transport: inprocess, fault_rate: 0.05}
    arms:
      real: {environment: real}
      sim-uncontrolled: {environment: world_model, backend: oracle}
      sim-controlled: {environment: world_model, backend: oracle, schedule: mcpmark, mode: inject}
    budget: {steps: 20, group_size: 4, batch: 4, max_turns: 12}
    seeds: [0, 1, 2]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simrl.config import validate_mapping
from simrl.errors import SpecError

_Strict = ConfigDict(extra="forbid", frozen=True)
_NAME = r"^[a-z0-9][a-z0-9_-]*$"
ENV_TASK_TYPES = {"search": ("qa", "table"), "mcp-world": ("records",)}
"""Environment ids a recipe may train in -> the task types each serves (as :mod:`simrl.policies`)."""


class WorldRef(BaseModel):
    """The world the arms train in, and the held-out worlds they are evaluated in."""

    model_config = _Strict
    spec: str = Field(description="A world spec YAML (generated with `seed`) or an existing world folder "
                                  "(used as is); relative paths are read from the recipe's folder.")
    seed: int = Field(default=0, ge=0, description="World seed of the training world (ignored for a folder).")
    entities: int | None = Field(default=None, ge=30, description="Entity count, overriding the spec's.")
    eval_worlds: list[int] = Field(
        default_factory=list,
        description="Seeds of held-out worlds (same spec) to evaluate in; empty: evaluate on the "
                    "training world's `evaluation.split` tasks only.")

    @model_validator(mode="after")
    def _distinct(self) -> WorldRef:
        if self.seed in self.eval_worlds:
            raise ValueError(f"eval_worlds holds the training seed {self.seed}; held-out worlds need other seeds")
        if len(set(self.eval_worlds)) != len(self.eval_worlds):
            raise ValueError("eval_worlds has a seed twice")
        if any(s < 0 for s in self.eval_worlds):
            raise ValueError("eval_worlds seeds must be >= 0")
        return self


class EnvRef(BaseModel):
    """The environment every arm shares (the real one, or its world-model version)."""

    model_config = _Strict
    id: Literal["mcp-world", "search"] = Field(description="Environment id: mcp-world (record tools) or search.")
    task_types: list[str] = Field(default_factory=list,
                                  description="Task types to train and evaluate on (empty: every type the "
                                              "environment serves: mcp-world records; search qa, table).")

    @model_validator(mode="after")
    def _served(self) -> EnvRef:
        bad = [t for t in self.task_types if t not in ENV_TASK_TYPES[self.id]]
        if bad:
            raise ValueError(f"task_types {bad} are not served by {self.id}; it serves "
                             f"{', '.join(ENV_TASK_TYPES[self.id])}")
        return self

    def types(self) -> tuple[str, ...]:
        """The task types in use (``task_types`` or every type the environment serves)."""
        return tuple(self.task_types) or ENV_TASK_TYPES[self.id]


class RealEnv(BaseModel):
    """Options of the real environment (the natural edge cases it has), passed to ``make``."""

    model_config = _Strict
    transport: Literal["stdio", "inprocess"] | None = Field(
        default=None, description="mcp-world only: how the record server runs (inprocess: in this "
                                  "process, fast; stdio: a server subprocess per episode; null: the default).")
    fault_rate: float = Field(default=0.0, ge=0, le=1,
                              description="mcp-world only: rate of the record server's own faults (errors, "
                                          "timeouts) per tool call.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Further keyword options of the real environment (e.g. "
                                                "fault_delay, call_timeout).")

    def make_options(self) -> dict[str, Any]:
        """Keyword options for ``make(env_id, world=W, **options)``; unset fields left out."""
        out = dict(self.options)
        if self.transport is not None:
            out["transport"] = self.transport
        if self.fault_rate:
            out["fault_rate"] = self.fault_rate
        return out


class Arm(BaseModel):
    """One arm: where its observations come from. Every other part of the recipe is shared."""

    model_config = _Strict
    environment: Literal["real", "world_model"] = Field(
        description="real: the real environment (with `real`'s options); world_model: its world-model version.")
    backend: Literal["oracle", "openai", "transformers", "llamacpp"] | None = Field(
        default=None, description="World-model backend (world_model arms; default oracle: the world's ground truth).")
    model: str | None = Field(default=None, description="World-model id or path (openai: required; "
                                                        "transformers/llamacpp: default the shipped SmolLM2).")
    base_url: str | None = Field(default=None, description="openai backend: endpoint, e.g. http://127.0.0.1:8000/v1 "
                                                           "(the key comes from $OPENAI_API_KEY).")
    temperature: float = Field(default=0.0, ge=0, description="World-model sampling temperature.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Further backend options (e.g. timeout, max_concurrency, n_threads).")
    schedule: str | None = Field(default=None, description="Perturbation schedule (world_model arms): a shipped "
                                                           "name (gentle, mcpmark, fault-heavy) or a YAML path.")
    mode: Literal["inject", "control"] = Field(
        default="inject", description="How the schedule is applied: inject (in code, guaranteed) or control "
                                      "(a control instruction to the world model, verified).")

    @model_validator(mode="after")
    def _consistent(self) -> Arm:
        if self.environment == "real":
            stray = [k for k in ("backend", "model", "base_url", "schedule") if getattr(self, k) is not None]
            if self.options or self.temperature:
                stray.append("options/temperature")
            if stray:
                raise ValueError(f"{', '.join(stray)}: only world_model arms take these (a real arm is the "
                                 "environment as it is; set environment: world_model)")
            if self.mode == "control":
                raise ValueError("mode control needs a world_model arm (the world model gets the instruction)")
        else:
            if self.backend == "openai" and not (self.model and self.base_url):
                raise ValueError("the openai backend needs model and base_url")
            if self.mode == "control" and self.schedule is None:
                raise ValueError("mode control needs a schedule (the perturbations to instruct)")
        return self

    def world_model(self) -> str:
        """The backend name, ``real`` for a real arm."""
        return "real" if self.environment == "real" else (self.backend or "oracle")


class PolicyConfig(BaseModel):
    """The trainable policy.

    ``scorer``: :class:`simrl.train.policy.ScorerPolicy` (DRRN-style; He et al., 2016), the embedded
    trainer's CPU policy. ``llm``: a Hugging Face causal LM (``model``: an id or a local folder) that
    writes tool calls itself, trained by TRL (one node) or verl (a Ray cluster).
    """

    model_config = _Strict
    kind: Literal["scorer", "llm"] = Field(default="scorer", description="Policy kind (scorer: the candidate "
                                                                         "scorer; llm: a causal language model).")
    dim: int = Field(default=64, ge=4, le=4096, description="scorer: embedding width of states and candidate actions.")
    buckets: int = Field(default=1 << 15, ge=64, le=1 << 24, description="scorer: hashed n-gram buckets.")
    temperature: float = Field(default=1.0, gt=0, description="Softmax / sampling temperature while training.")
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

    model_config = _Strict
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

    model_config = _Strict
    lora_rank: int = Field(default=0, ge=0, description="LoRA rank (0: train every weight).")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA alpha.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where the policy runs "
                                                                              "(auto: cuda if available).")
    use_vllm: bool = Field(default=False, description="Generate with vLLM (colocated; GPU only).")
    options: dict[str, Any] = Field(default_factory=dict, description="Further trl.GRPOConfig fields "
                                                                      "(e.g. beta, loss_type).")


class TrainerConfig(BaseModel):
    """Which trainer runs the arm, and its optimiser settings."""

    model_config = _Strict
    kind: Literal["embedded", "trl", "verl"] = Field(
        default="embedded", description="embedded: the in-process CPU GRPO trainer (simrl.train.embedded, "
                                        "scorer policy); trl: TRL's GRPO trainer on one node (llm policy); "
                                        "verl: verl on a Ray cluster (llm policy, GPUs).")
    lr: float = Field(default=0.003, gt=0, description="Adam learning rate of the GRPO updates.")
    grad_clip: float = Field(default=1.0, gt=0, description="Gradient-norm clip per update.")
    entropy_coef: float = Field(default=0.0, ge=0, description="Entropy bonus weight (0: none).")
    checkpoint_every: int = Field(default=5, ge=1, description="Steps between checkpoints (one more at the end).")
    keep_checkpoints: int = Field(default=2, ge=1, description="Newest checkpoints kept (older ones are deleted; "
                                                               "each holds the policy and Adam's two moments).")
    trajectories_per_step: int = Field(default=4, ge=0, description="Episodes per step written to "
                                                                     "trajectories.jsonl (a sample).")
    concurrency: int = Field(default=8, ge=1, description="Episodes in flight at once.")
    verl: VerlOptions = Field(default_factory=VerlOptions, description="verl options (kind verl).")
    trl: TrlOptions = Field(default_factory=TrlOptions, description="TRL options (kind trl).")


class Budget(BaseModel):
    """How much training: ``steps`` updates of ``batch`` tasks x ``group_size`` episodes each."""

    model_config = _Strict
    steps: int = Field(ge=1, description="GRPO updates.")
    group_size: int = Field(default=4, ge=2, description="Episodes per task per step (the GRPO group).")
    batch: int = Field(default=4, ge=1, description="Train tasks per step.")
    max_turns: int = Field(default=12, ge=1, description="Turn limit per episode.")


class WarmStart(BaseModel):
    """Behaviour cloning from scripted-expert demonstrations collected in the REAL environment."""

    model_config = _Strict
    demos: int = Field(default=0, ge=0, description="Train tasks with an expert demonstration (0: no warm start).")
    epochs: int = Field(default=5, ge=1, description="Passes over the demonstrations.")
    lr: float = Field(default=0.01, gt=0, description="Learning rate of behaviour cloning.")


class Evaluation(BaseModel):
    """Held-out evaluation in the real environment (written by :mod:`simrl.train.evaluate`)."""

    model_config = _Strict
    split: Literal["train", "dev", "test"] = Field(default="test", description="Task split of the training world.")
    trials: int = Field(default=1, ge=1, description="Episodes per task (Avg@N / Pass@N).")
    max_tasks: int | None = Field(default=None, ge=1, description="At most this many tasks per world (null: all).")
    greedy: bool = Field(default=True, description="Act greedily (argmax) instead of sampling.")


class Grid(BaseModel):
    """An optional sweep: one extra arm per schedule, copied from ``arm`` with only the schedule changed."""

    model_config = _Strict
    arm: str = Field(description="The world_model arm to copy (usually the controlled one).")
    schedules: list[str] = Field(min_length=1, description="Schedules to sweep (shipped names or YAML paths).")


class Recipe(BaseModel):
    """A training recipe (``recipes/*.yaml``)."""

    model_config = _Strict
    name: str = Field(pattern=_NAME, description="Short name (lowercase, digits, '-', '_'); the default run folder.")
    description: str = Field(default="", description="What the experiment is for.")
    world: WorldRef = Field(description="The training world and the held-out worlds.")
    env: EnvRef = Field(description="The environment all arms share.")
    real: RealEnv = Field(default_factory=RealEnv, description="The real environment's options.")
    arms: dict[str, Arm] = Field(min_length=1, description="Arm name -> where its observations come from.")
    policy: PolicyConfig = Field(default_factory=PolicyConfig, description="The trainable policy.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="Trainer and optimiser.")
    budget: Budget = Field(description="Steps, group size, batch and turn limit.")
    warm_start: WarmStart = Field(default_factory=WarmStart, description="Behaviour-cloning warm start.")
    evaluation: Evaluation = Field(default_factory=Evaluation, description="Held-out evaluation.")
    seeds: list[int] = Field(default=[0], min_length=1, description="Training seeds; every arm runs each.")
    grid: Grid | None = Field(default=None, description="Optional schedule sweep of one world_model arm.")

    @model_validator(mode="after")
    def _possible(self) -> Recipe:
        import re

        bad = [a for a in self.arms if not re.match(_NAME, a) or a in ("worlds", "cache")]
        if bad:
            raise ValueError(f"arms: bad arm name(s) {bad}: use lowercase letters, digits, '-', '_' "
                             "(not 'worlds' or 'cache', which name run folders)")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError("seeds must be distinct and >= 0")
        if self.env.id != "mcp-world" and (self.real.transport or self.real.fault_rate):
            raise ValueError(f"real: transport and fault_rate are options of mcp-world, not {self.env.id}")
        if self.trainer.kind == "embedded" and self.policy.kind != "scorer":
            raise ValueError("the embedded trainer trains the scorer policy; for an llm policy set "
                             "trainer.kind: trl (one node) or verl (Ray cluster)")
        if self.trainer.kind in ("trl", "verl") and self.policy.kind != "llm":
            raise ValueError(f"trainer {self.trainer.kind} trains an llm policy; set policy.kind: llm and "
                             "policy.model (or use trainer.kind: embedded)")
        if self.grid is not None:
            base = self.arms.get(self.grid.arm)
            if base is None or base.environment != "world_model":
                raise ValueError(f"grid.arm {self.grid.arm!r} must name a world_model arm of `arms`")
        return self

    def all_arms(self) -> dict[str, Arm]:
        """``arms`` plus the grid's arms (``<arm>@<schedule name>``), in order."""
        out = dict(self.arms)
        if self.grid is not None:
            base = self.arms[self.grid.arm]
            for s in self.grid.schedules:
                out[f"{self.grid.arm}@{Path(s).stem}"] = base.model_copy(update={"schedule": s})
        return out

    def arm(self, name: str) -> Arm:
        """The arm called ``name`` (grid arms included).

        Raises:
            SpecError: no such arm (the message lists them).
        """
        arms = self.all_arms()
        if name not in arms:
            raise SpecError(f"recipe {self.name!r} has no arm {name!r}; arms: {', '.join(arms)}")
        return arms[name]


class _UniqueKeys(yaml.SafeLoader):
    """A YAML loader that rejects a key given twice in one mapping (two arms of the same name)."""


def _no_duplicates(loader: _UniqueKeys, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (names must be distinct)",
                                                    key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def parse_recipe(data: object, source: str = "recipe") -> Recipe:
    """Validate a parsed YAML mapping as a :class:`Recipe` (no files are read).

    Raises:
        SpecError: one line per problem, each naming the field (``budget.steps: ...``).
    """
    return validate_mapping(Recipe, data, source=source, what="recipe", example="recipes/quickstart.yaml")


def _resolve(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    if not (base / p).exists() and p.exists():  # not next to the recipe, but from the working directory
        return p.resolve()
    return (base / p).resolve()


def _oneline(err: Exception) -> str:
    """A nested file's error on one line (``path: invalid schedule; perturbations.x: ...``)."""
    return "; ".join(line.strip() for line in str(err).splitlines())


def resolve_files(recipe: Recipe, base: Path, source: str = "recipe") -> Recipe:
    """Check the files a recipe names and make their paths absolute (relative ones are read from ``base``).

    The world must be a spec that validates or a world folder; each schedule a shipped name or a
    schedule file that validates.

    Raises:
        SpecError: one line per problem, naming the field (``arms.sim.schedule: schedule not found ...``).
    """
    from simrl.perturb import load_schedule
    from simrl.world import load_spec

    problems: list[str] = []
    world = _resolve(recipe.world.spec, base)
    if world.is_dir():
        if not (world / "manifest.json").is_file():
            problems.append(f"  world.spec: {world} is a folder but not a world (no manifest.json)")
    else:
        try:
            load_spec(world)
        except SpecError as err:
            problems.append(f"  world.spec: {_oneline(err)}")

    def schedule(field: str, value: str) -> str:
        shipped = "/" not in value and not value.endswith((".yaml", ".yml"))
        path = value if shipped else str(_resolve(value, base))
        try:
            load_schedule(path)
        except SpecError as err:
            problems.append(f"  {field}: {_oneline(err)}")
        return path

    arms = {name: arm.model_copy(update={"schedule": schedule(f"arms.{name}.schedule", arm.schedule)})
            if arm.schedule else arm for name, arm in recipe.arms.items()}
    grid = recipe.grid
    if grid is not None:
        grid = grid.model_copy(update={"schedules": [schedule(f"grid.schedules.{i}", s)
                                                     for i, s in enumerate(grid.schedules)]})
    if problems:
        raise SpecError(f"{source}: invalid recipe\n" + "\n".join(problems))
    return recipe.model_copy(update={"world": recipe.world.model_copy(update={"spec": str(world)}),
                                     "arms": arms, "grid": grid})


def load_recipe(path: str | Path) -> Recipe:
    """Read, validate and resolve a recipe YAML file.

    Returns:
        The recipe, with the world and schedule paths made absolute.

    Raises:
        SpecError: the file is missing or not YAML, a key is given twice, a field fails validation, or a
            file it names is missing or invalid (one line per problem, naming the field).
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"recipe not found: {p} (shipped recipes: recipes/quickstart.yaml, "
                        "recipes/mcp-controlled-vs-uncontrolled.yaml, recipes/search-fictional-worlds.yaml)")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeys)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise SpecError(f"{p}: not valid YAML: {err}") from None
    return resolve_files(parse_recipe(data, source=str(p)), p.resolve().parent, source=str(p))


def recipe_yaml(recipe: Recipe) -> str:
    """The recipe as YAML (every field, defaults included): the run folder's ``recipe.yaml``."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
