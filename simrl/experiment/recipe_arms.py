"""Recipe sections that say where the arms' observations come from: the world, the environment, the arms.

Part of :mod:`simrl.experiment.recipe` (import the models from there): the training and held-out worlds
(:class:`WorldRef`), the environment every arm shares (:class:`EnvRef`) and its real options
(:class:`RealEnv`), and the arms themselves (:class:`Arm`: real | world model | world model +
perturbation schedule). Validated once, by pydantic, with one help text per field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simrl.choices import PerturbMode, Transport, WorldModelName

STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
"""The model config of every recipe section: unknown fields rejected, values frozen."""


def served_types(env_id: str) -> tuple[str, ...]:
    """The task types environment ``env_id`` serves (its registered spec's ``task_types``)."""
    from simrl.envs.base import spec

    return spec(env_id).task_types


class WorldRef(BaseModel):
    """The world the arms train in, and the held-out worlds they are evaluated in."""

    model_config = STRICT
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

    model_config = STRICT
    id: str = Field(description="Environment id: mcp-world (record tools), search, or any registered environment "
                                "with tasks (an installed plugin's, or one named by `simrl --import MODULE`).")
    task_types: list[str] = Field(default_factory=list,
                                  description="Task types to train and evaluate on (empty: every type the "
                                              "environment serves: mcp-world records; search qa, table).")

    @field_validator("id")
    @classmethod
    def _registered(cls, value: str) -> str:
        from simrl.envs.base import specs

        known = specs()
        if value not in known:
            raise ValueError(f"unknown environment {value!r}; registered: {', '.join(known)} (your own: "
                             "`simrl --import MODULE`, docs/plugins.md)")
        if not known[value].task_types:
            raise ValueError(f"environment {value!r} declares no task types (EnvSpec.task_types): a recipe "
                             "trains and evaluates on the tasks its environment serves")
        return value

    @model_validator(mode="after")
    def _served(self) -> EnvRef:
        served = served_types(self.id)
        bad = [t for t in self.task_types if t not in served]
        if bad:
            raise ValueError(f"task_types {bad} are not served by {self.id}; it serves "
                             f"{', '.join(served)}")
        return self

    def types(self) -> tuple[str, ...]:
        """The task types in use (``task_types`` or every type the environment serves)."""
        return tuple(self.task_types) or served_types(self.id)


class RealEnv(BaseModel):
    """Options of the real environment (the natural edge cases it has), passed to ``make``."""

    model_config = STRICT
    transport: Transport | None = Field(
        default=None, description="mcp-world only: how the record server runs (inprocess: in this "
                                  "process, fast; stdio: a server subprocess per episode; null: the default).")
    fault_rate: float = Field(default=0.0, ge=0, le=1,
                              description="Rate of the real environment's own operational faults (timeouts, 429, "
                                          "503) per tool call (mcp-world: the record server's; search: the engine's).")
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

    model_config = STRICT
    environment: Literal["real", "world_model"] = Field(
        description="real: the real environment (with `real`'s options); world_model: its world-model version.")
    backend: WorldModelName | None = Field(
        default=None, description="World-model backend (world_model arms; default oracle: the world's ground truth).")
    model: str | None = Field(default=None, description="World-model id or path (openai: required; "
                                                        "transformers/llamacpp: default the shipped SmolLM2).")
    base_url: str | None = Field(default=None, description="openai backend: endpoint, e.g. http://127.0.0.1:8000/v1 "
                                                           "(the key comes from $OPENAI_API_KEY).")
    temperature: float = Field(default=0.0, ge=0, description="World-model sampling temperature.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Further backend options (e.g. timeout, max_concurrency, n_threads).")
    cache: str | None = Field(default=None, description="World-model response cache folder (world_model arms; "
                                                        "relative to the working directory): a repeated prompt is "
                                                        "answered from it, so a local model is asked once.")
    max_tokens: int = Field(default=4096, ge=1, le=262144, description="World model: most tokens per prediction.")
    open_within: int | None = Field(
        default=None, ge=1, le=262144,
        description="llamacpp arms: a prediction that has not opened its <predicted_observation> block after this "
                    "many tokens is cut there and shown as unparsed (a weak model's format failures cost this many "
                    "tokens instead of max_tokens); None: no cut.")
    parse_retries: int = Field(
        default=1, ge=0, le=8,
        description="world_model arms: re-samples (temperature 0.6) of a prediction without a prediction block "
                    "before it is shown raw and counted unparsed; 0 = the environment `simrl wm eval` measures.")
    schedule: str | None = Field(default=None, description="Perturbation schedule (world_model arms): a shipped "
                                                           "name (gentle, mcpmark, fault-heavy) or a YAML path.")
    mode: PerturbMode = Field(
        default="inject", description="How the schedule is applied: inject (in code, guaranteed) or control "
                                      "(a control instruction to the world model, verified).")
    fidelity: str | None = Field(
        default=None, pattern=r"^[^#]+#[^#]+$",
        description="world_model arms: this world model's held-out fidelity, FOLDER#LABEL: a `simrl wm eval` "
                    "output folder (relative to the working directory) and the world model's label in it "
                    "(e.g. runs/lwm/fidelity#trained); report.md shows it beside the arm's held-out success.")

    @model_validator(mode="after")
    def _consistent(self) -> Arm:
        if self.environment == "real":
            stray = [k for k in ("backend", "model", "base_url", "schedule", "cache", "fidelity", "open_within")
                     if getattr(self, k) is not None]
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
            if self.open_within is not None and self.backend != "llamacpp":
                raise ValueError("open_within needs backend llamacpp (it cuts a local model's reply)")
        return self

    def world_model(self) -> str:
        """The backend name, ``real`` for a real arm."""
        return "real" if self.environment == "real" else (self.backend or "oracle")


class Grid(BaseModel):
    """An optional sweep: one extra arm per schedule, copied from ``arm`` with only the schedule changed."""

    model_config = STRICT
    arm: str = Field(description="The world_model arm to copy (usually the controlled one).")
    schedules: list[str] = Field(min_length=1, description="Schedules to sweep (shipped names or YAML paths).")
