"""Recipes: the YAML files in ``recipes/`` that describe a training experiment.

A recipe names a world, the environment every arm shares, the arms (real | world model | world model
+ perturbation schedule), the policy, the trainer, the budget, the warm start, the evaluation and the
seeds (and, optionally, the experiment trackers to feed). The arms differ only in their environment
(docs/design.md §2): that is the experiment. Validated once, here, by pydantic like world specs (:mod:`simrl.world.spec`): one help text per field (its
``description``), unknown fields rejected, impossible combinations caught with a message that says how
to fix them. :func:`load_recipe` turns every problem into a :class:`~simrl.errors.SpecError` with one
line per problem naming the field (``arms.real.schedule: ...``), then resolves the files it names
(world spec or folder, schedules) relative to the recipe's folder.

Layout: this module holds :class:`Recipe` (with the optional :class:`Grid`) and the YAML reading and
writing; the sections are in :mod:`simrl.experiment.recipe_arms` (world, environment, arms) and
:mod:`simrl.experiment.recipe_training` (policy, trainer, budget, warm start, evaluation, logging), the file
resolution in :mod:`simrl.experiment.recipe_files`. Every name is importable from here.

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
    primary: {a: sim-controlled, b: sim-uncontrolled, metric: success}

``primary`` is the comparison the experiment is for, declared before running (:class:`Primary`):
``report.md`` opens with its paired test; every other comparison is secondary (Holm-corrected).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, model_validator

from simrl.config import validate_mapping
from simrl.errors import SpecError
from simrl.experiment.baselines import BASELINES
from simrl.experiment.recipe_arms import STRICT, Arm, EnvRef, Grid, RealEnv, WorldRef
from simrl.experiment.recipe_files import resolve_paths
from simrl.experiment.recipe_training import (
    TRAINERS,
    Budget,
    Evaluation,
    Logging,
    PolicyConfig,
    TrainerConfig,
    TrlOptions,
    VerlOptions,
    WarmStart,
)
from simrl.overrides import apply_overrides

__all__ = ["Arm", "Budget", "EnvRef", "Evaluation", "Grid", "Logging",
           "PolicyConfig", "Primary", "RealEnv", "Recipe", "primary_metrics", "TrainerConfig", "TrlOptions", "VerlOptions",
           "WarmStart", "WorldRef", "load_recipe",
           "parse_recipe", "recipe_yaml", "resolve_files"]

_NAME = r"^[a-z0-9][a-z0-9_-]*$"


def primary_metrics(trials: int, task_types: tuple[str, ...]) -> tuple[str, ...]:
    """Metrics a primary comparison may use: success, reward, avg@k, pass@k (k = ``evaluation.trials``),
    and the WideSearch F1s when table tasks are evaluated (the names of :func:`simrl.evaluation.results.summarize`).

    >>> primary_metrics(2, ("records",))
    ('success', 'reward', 'avg@2', 'pass@2')
    """
    return ("success", "reward", f"avg@{trials}", f"pass@{trials}") + \
        (("item_f1", "row_f1") if "table" in task_types else ())


class Primary(BaseModel):
    """The preregistered primary comparison ``a - b`` on ``metric``, paired over seeds.

    Declared before running: ``report.md`` opens with its paired t test and its task x seed stratified
    bootstrap; everything else is secondary. Without it, the default is the first controlled world-model
    arm minus the first uncontrolled one on success (else a world-model arm minus the real arm, else the
    first arm minus the warm start), and the report says it was not declared.
    """

    model_config = STRICT
    a: str = Field(description="An arm (grid arms included).")
    b: str = Field(description="Another arm, or a baseline: untrained, warmstart or candidates.")
    metric: str = Field(default="success", description="success, reward, avg@k or pass@k (k = evaluation.trials), "
                                                       "item_f1 or row_f1 (table tasks).")


class PositiveControl(BaseModel):
    """The preregistered positive control: the skills the arms differ in are learnable at this budget.

    It passes when, for every subset in ``subsets``, some trained arm beats ``baseline`` on success within that
    subset with a paired interval above 0 (the same pre-drawn evaluation episodes in every arm and seed).
    ``report.md`` states it right after the primary comparison; when it fails, the report says first that the
    experiment could not answer its question (an arm can only differ from another by a skill it learned).
    """

    model_config = STRICT
    subsets: list[str] = Field(default=["multi_page", "faulted"], min_length=1,
                               description="Evaluation subsets (simrl.evaluation.results.SUBSETS) of the skills, or "
                                           "`overall` (every evaluation task: the budget moves the policy at all).")
    baseline: str = Field(default="warmstart", description="The baseline some arm must beat: warmstart, untrained "
                                                          "or candidates.")

    @model_validator(mode="after")
    def _known(self) -> PositiveControl:
        from simrl.evaluation.results import OVERALL, SUBSETS

        bad = [s for s in self.subsets if s not in SUBSETS and s != OVERALL]
        if bad:
            raise ValueError(f"subsets: unknown {bad}; known: {OVERALL}, {', '.join(SUBSETS)}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline {self.baseline!r}: use one of {', '.join(BASELINES)}")
        return self


class Recipe(BaseModel):
    """A training recipe (``recipes/*.yaml``)."""

    model_config = STRICT
    name: str = Field(pattern=_NAME, description="Short name (lowercase, digits, '-', '_'); the default run folder.")
    description: str = Field(default="", description="What the experiment is for.")
    world: WorldRef = Field(description="The training world and the held-out worlds.")
    env: EnvRef = Field(description="The environment all arms share.")
    real: RealEnv = Field(default_factory=RealEnv, description="The real environment's options.")
    arms: dict[str, Arm] = Field(min_length=1, description="Arm name -> where its observations come from.")
    policy: PolicyConfig = Field(default_factory=PolicyConfig, description="The trainable policy.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="Trainer and optimiser.")
    budget: Budget = Field(description="Steps, group size, batch and turn limit.")
    warm_start: WarmStart | None = Field(default_factory=WarmStart, description="Behaviour-cloning warm start "
                                                                              "(null or demos: 0: none).")
    evaluation: Evaluation = Field(default_factory=Evaluation, description="Held-out evaluation.")
    logging: Logging = Field(default_factory=Logging, description="Experiment trackers (none by default).")
    seeds: list[int] = Field(default=[0], min_length=1, description="Training seeds; every arm runs each.")
    grid: Grid | None = Field(default=None, description="Optional schedule sweep of one world_model arm.")
    primary: Primary | None = Field(
        default=None, description="The comparison the experiment is for, declared before running: "
                                  "{a: ARM, b: ARM or baseline, metric: success} (null: a default, so marked).")
    positive_control: PositiveControl | None = Field(
        default=None, description="The check that the skills under test were learned at all, declared before "
                                  "running: {subsets: [multi_page, faulted], baseline: warmstart} (null: none).")
    baselines: list[str] = Field(
        default_factory=lambda: list(BASELINES), description="Baselines evaluated beside the arms on the same tasks "
        "and episodes, in report order: " + "; ".join(f"{n}: {b.description}" for n, b in BASELINES.items()) + ".")

    @model_validator(mode="after")
    def _possible(self) -> Recipe:
        import re

        bad = [a for a in self.arms if not re.match(_NAME, a) or a in ("worlds", "cache")]
        if bad:
            raise ValueError(f"arms: bad arm name(s) {bad}: use lowercase letters, digits, '-', '_' "
                             "(not 'worlds' or 'cache', which name run folders)")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError("seeds must be distinct and >= 0")
        set_options = [k for k in ("transport", "fault_rate") if getattr(self.real, k)] + list(self.real.options)
        if set_options:
            from simrl.envs.registry import option_error

            if (why := option_error(self.env.id, set_options)) is not None:
                raise ValueError(f"real: {why}")
        trains = TRAINERS[self.trainer.kind].policy
        if self.policy.kind != trains:
            others = [k for k, t in TRAINERS.items() if t.policy == self.policy.kind]
            raise ValueError(f"the {self.trainer.kind} trainer trains the {trains} policy (policy.kind: {trains}); "
                             f"for a {self.policy.kind} policy set trainer.kind: {' or '.join(others)}")
        simulated = {n: a for n, a in self.arms.items() if a.environment == "world_model"}
        if simulated:
            from simrl.wm.env_truth import oracle_envs, supported

            if self.env.id not in supported():
                raise ValueError(f"arms {sorted(simulated)} train in a world model, but environment {self.env.id!r} "
                                 f"has no world-model version (those with one: {', '.join(supported())})")
            oracle = sorted(n for n, a in simulated.items() if a.world_model() == "oracle")
            if oracle and self.env.id not in oracle_envs():
                raise ValueError(f"arms {oracle} use the oracle, but environment {self.env.id!r} has no ground "
                                 f"truth for it (the oracle covers {', '.join(oracle_envs())})")
        if self.grid is not None:
            base = self.arms.get(self.grid.arm)
            if base is None or base.environment != "world_model":
                raise ValueError(f"grid.arm {self.grid.arm!r} must name a world_model arm of `arms`")
        self._check_baselines()
        if self.primary is not None:
            self._check_primary(self.primary)
        return self

    def _check_baselines(self) -> None:
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad or len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"baselines: {'unknown ' + str(bad) if bad else 'a baseline named twice'}; known: "
                             f"{', '.join(BASELINES)}")
        if self.positive_control is not None and self.positive_control.baseline not in self.baselines:
            raise ValueError(f"positive_control.baseline {self.positive_control.baseline!r} is not among baselines "
                             f"{self.baselines}; add it there")

    def _check_primary(self, p: Primary) -> None:
        arms = list(self.all_arms())
        if p.a not in arms:
            raise ValueError(f"primary.a {p.a!r} is not an arm; arms: {', '.join(arms)}")
        if p.b not in arms and p.b not in self.baselines:
            raise ValueError(f"primary.b {p.b!r} is neither an arm nor a baseline; use one of "
                             f"{', '.join(arms + self.baselines)}")
        if p.a == p.b:
            raise ValueError(f"primary: a and b are both {p.a!r}; compare two different arms")
        known = primary_metrics(self.evaluation.trials, self.env.types())
        if p.metric not in known:
            raise ValueError(f"primary.metric {p.metric!r} is not evaluated here; use one of {', '.join(known)}")

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


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read, validate and resolve a recipe YAML file, by path or shipped name (``quickstart``, see
    :func:`simrl.assets.resolve`).

    Args:
        path: a recipe file or a shipped recipe's name.
        overrides: Hydra overrides (``budget.steps=2``, ``seeds=[0]``, ``+arms.new.environment=real``) set
            before validation (:func:`simrl.overrides.apply_overrides`), so they are checked like the file;
            a key the recipe does not have needs the ``+`` prefix.

    Returns:
        The recipe, with the world and schedule paths made absolute.

    Raises:
        SpecError: the file is missing or not YAML, a key is given twice, an override is malformed or
            names a key the recipe does not have, a field fails validation, or a file it names is missing or invalid (one line per problem, naming the field).
    """
    from simrl.assets import not_found, resolve

    p = resolve(path, "recipe")
    if not p.is_file():
        raise SpecError(not_found(path, "recipe"))
    from simrl.config import load_mapping

    data = load_mapping(p, "recipe", loader=_UniqueKeys)
    source = str(p) + (f" (with --set {' '.join(overrides)})" if overrides else "")
    data = apply_overrides(data, overrides, Recipe)
    return resolve_files(parse_recipe(data, source=source), p.resolve().parent, source=source)


def resolve_files(recipe: Recipe, base: Path, source: str = "recipe") -> Recipe:
    """Check the files a recipe names and make their paths absolute (relative ones are read from ``base``):
    :func:`simrl.experiment.recipe_files.resolve_paths` on its world and schedules.

    Raises:
        SpecError: one line per problem, naming the field (``arms.sim.schedule: schedule not found ...``).
    """
    world, arms, grid = resolve_paths(recipe.world, recipe.arms, recipe.grid, base, source)
    return recipe.model_copy(update={"world": world, "arms": arms, "grid": grid})


def recipe_yaml(recipe: Recipe) -> str:
    """The recipe as YAML (every field, defaults included): the run folder's ``recipe.yaml``."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
