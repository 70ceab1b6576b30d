"""simrl environments in your own TRL script: ``GRPOTrainer(environment_factory=...)`` (TRL 1.16).

TRL's interface (``trl/trainer/grpo_trainer.py``, the ``environment_factory`` argument): a callable
returning one environment instance per rollout (instances are pooled and ``reset`` between batches);
the instance's public methods are the tools (typed signature + docstring, as for ``tools``);
``reset(**row)`` gets the dataset row and returns None or text appended to the last user message; the
reward functions get the instances as ``environments=``. :class:`SimrlTRL` provides the three pieces a
script needs for any registered environment and arm (real, world model, world model perturbed by a
schedule):

* :meth:`SimrlTRL.environment_factory`: a :class:`SimrlEnvironment` whose tool methods are built from
  the environment's tool schemas (:func:`simrl.integrations.trl_tools.tool_method`); each ``reset``
  makes a fresh simrl environment of the arm (at the schedule's current curriculum progress) and resets
  it on the row's task; each tool call is one simrl ``step``;
* :meth:`SimrlTRL.dataset`: one row per task of the world: ``prompt`` (the system prompt and the task's
  policy view, :meth:`simrl.world.schema.Task.policy_view`) and ``task_id``, nothing else;
* :meth:`SimrlTRL.reward`: the reward function. The completion's last assistant message is the final
  answer; it is given to the rollout's environment as simrl's final action, and the environment scores
  it with the task's scorer (its registered ``score_final``: answers, and for record writes the final
  record state). The gold and a world model's simulation facts live in the task objects this process
  holds, never in the dataset, the prompt or a tool result: the model never sees them.

A rollout whose environment failed (reset or a step raised, or a world model's backend failed) gets the
reward None, which TRL leaves out of its group, as simrl's own trainers do with ``env_failure``
episodes; one that ended without a final answer (tool-call limit, completion length) is ``truncated``
with reward 0. :meth:`SimrlTRL.callback` advances a schedule's curriculum with training progress
(``global_step / max_steps``). Each finished rollout is a simrl :class:`~simrl.types.Trajectory`
(``trajectories=`` writes them to a JSONL file, as ``simrl rollout`` writes them).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simrl.envs.base import Environment, spec
from simrl.errors import SimrlError
from simrl.experiment import runs
from simrl.experiment.recipe import Arm
from simrl.integrations.trl_env import SimrlEnvironment, final_answer
from simrl.integrations.trl_tools import run_sync, tool_method
from simrl.policies.openai_policy import DEFAULT_SYSTEM_PROMPT
from simrl.rollout import TrajectoryWriter
from simrl.types import Trajectory
from simrl.world.schema import Task

__all__ = ["SimrlEnvironment", "SimrlTRL", "final_answer"]


class SimrlTRL:
    """A simrl environment and arm for TRL's ``GRPOTrainer``: environment factory, dataset, reward.

    Args:
        env: a registered environment id (``simrl env list``).
        world: the world folder whose tasks and records the environment uses (None for an environment
            with its own tasks).
        arm: ``"real"``, an :class:`~simrl.experiment.recipe.Arm` or its fields as a dict
            (``{"environment": "world_model", "backend": "oracle", "schedule": "mcpmark"}``).
        real_options: options of the real environment (a recipe's ``real:`` section).
        max_turns: most tool calls per rollout (None: the environment's own limit); a rollout that
            reaches it ends without a final answer (``truncated``, reward 0).
        seed: seeds the episodes (``seed * 1_000_003 + n`` for the n-th reset) and the schedule's draws.
        system_prompt: the dataset's system message (default: simrl's policy prompt, which asks for the
            final answer inside ``<answer>...</answer>``).
        trajectories: a JSONL file each finished rollout is appended to (None: kept only in ``last``).

    Raises:
        SimrlError / SpecError: unknown environment, no tasks, a bad arm or schedule, an environment
            whose tools cannot be methods, or one that scores over several user turns (bfcl).
    """

    def __init__(self, env: str, world: str | Path | None = None, arm: str | Arm | dict[str, Any] = "real", *,
                 real_options: dict[str, Any] | None = None, max_turns: int | None = None, seed: int = 0,
                 system_prompt: str = DEFAULT_SYSTEM_PROMPT, trajectories: str | Path | None = None,
                 task_types: tuple[str, ...] | None = None) -> None:
        env_spec = spec(env)
        if env_spec.score_final is None:
            raise SimrlError(f"environment {env!r} scores its episodes in its own way over several user turns, "
                             "which TRL's tool loop does not drive; train it with `simrl train` (trainer.kind trl)")
        self.env_id, self.world = env, Path(world) if world is not None else None
        self.arm = _arm(arm)
        self.real_options, self.max_turns, self.seed = dict(real_options or {}), max_turns, seed
        self.system_prompt, self.progress = system_prompt, 0.0
        self.tasks = {t.task_id: t for t in runs.env_tasks(env, self.world, None, task_types)}
        self.last: list[Trajectory] = []
        self._episodes, self._factory, self._live = 0, (None, None), weakref.WeakSet()
        self._writer = TrajectoryWriter(trajectories) if trajectories is not None else None
        self.tools = self._probe_tools()
        methods = {t["function"]["name"]: tool_method(t, lambda e, name, args: e._call(name, args)) for t in self.tools}
        self.environment_class: type[SimrlEnvironment] = type("SimrlEnvironment", (SimrlEnvironment,), methods)

    @classmethod
    def from_recipe(cls, recipe: str | Path, arm: str, *, out: str | Path | None = None,
                    overrides: tuple[str, ...] = (), seed: int | None = None, **options: Any) -> SimrlTRL:
        """The recipe's environment, training world (generated under ``OUT/worlds``; default ``OUT`` =
        ``runs/<recipe name>``), real options, turn limit and task types, with its arm ``arm``.

        Raises:
            SpecError: the recipe is invalid or has no such arm.
        """
        from simrl.experiment.recipe import load_recipe

        rec = load_recipe(recipe, overrides)
        world = runs.training_world(rec, runs.worlds_dir(out or Path("runs") / rec.name))
        return cls(rec.env.id, world, rec.arm(arm), real_options=rec.real.make_options(),
                   max_turns=rec.budget.max_turns, seed=rec.seeds[0] if seed is None else seed,
                   task_types=rec.env.types(), **options)

    def _probe_tools(self) -> list[dict[str, Any]]:
        """The arm's tool schemas: a first environment reset on the first task, then closed."""
        env = self.make_env()

        async def probe() -> list[dict[str, Any]]:
            try:
                initial = await env.reset(next(iter(self.tasks.values())), 0)
                return list(initial.tools or env.tools)
            finally:
                await env.close()

        tools = run_sync(probe())
        if not tools:
            raise SimrlError(f"environment {self.env_id!r} lists no tools after reset: nothing for TRL to call")
        return tools

    def task(self, task_id: Any) -> Task:
        """The task ``task_id`` of this world.

        Raises:
            SimrlError: none (a dataset row without ``task_id``, or from another world).
        """
        if task_id not in self.tasks:
            raise SimrlError(f"dataset row's task_id {task_id!r} is not a task of {self.world or self.env_id}; "
                             "build the dataset with SimrlTRL.dataset()")
        return self.tasks[task_id]

    def make_env(self) -> Environment:
        """A fresh environment of the arm, its schedule read at the current ``progress``."""
        key, factory = self._factory
        if key != self.progress or factory is None:
            factory = runs.env_factory(self.env_id, self.arm, self.world, self.real_options,
                                       progress=min(1.0, max(0.0, self.progress)), seed=self.seed)
            self._factory = (self.progress, factory)
        return factory()

    def next_seed(self) -> int:
        """The next episode's seed."""
        self._episodes += 1
        return self.seed * 1_000_003 + self._episodes - 1

    def environment_factory(self) -> SimrlEnvironment:
        """TRL's ``environment_factory``: a new :class:`SimrlEnvironment` with this arm's tools."""
        instance = self.environment_class(self)
        self._live.add(instance)
        return instance

    def dataset(self, split: str | None = "train", n: int | None = None, *, environment: str | None = None) -> Any:
        """A ``datasets.Dataset`` of the world's tasks of ``split`` (None: all), at most ``n``, in file order.

        Each row is ``{"prompt": [system, user], "task_id"}``: the user message is the task's policy view
        (its prompt), exactly what the environment's reset shows; no gold, no simulation facts. With
        ``environment``, each row also names it (TRL's ``environment`` column): for a dict
        ``environment_factory`` mixing several environments or arms, concatenate their datasets
        (``datasets.concatenate_datasets``) and pass any one ``reward`` (each rollout is scored by its own
        environment).
        """
        from datasets import Dataset

        tasks = [t for t in self.tasks.values() if split is None or t.split == split][:n]
        if not tasks:
            raise SimrlError(f"no tasks in split {split!r} of {self.world or self.env_id}")
        named = {"environment": environment} if environment is not None else {}
        return Dataset.from_list([{"prompt": [{"role": "system", "content": self.system_prompt},
                                              {"role": "user", "content": t.policy_view()["prompt"]}],
                                   "task_id": t.task_id, **named} for t in tasks])

    def reward(self, prompts: list[Any], completions: list[Any], environments: list[Any] | None = None,
               task_id: list[str] | None = None, log_metric: Callable[[str, float], None] | None = None,
               **_: Any) -> list[float | None]:
        """TRL reward function: each rollout's final answer scored by its environment (see the module
        docstring); None for an environment failure. Without ``environments`` (a plain GRPO run on the
        dataset), the answer is scored against the task by the environment's registered scorer."""
        answers = [final_answer(c) for c in completions]
        if environments is None:
            return [self._score(self.task(t), a) for t, a in zip(task_id or [], answers)]
        trajs = [e._finish(a) if isinstance(e, SimrlEnvironment) else None for e, a in zip(environments, answers)]
        done = [t for t in trajs if t is not None]
        self.last = done
        if log_metric is not None and done:
            log_metric("simrl/success", sum(t.status == "success" for t in done) / len(done))
            log_metric("simrl/env_failures", sum(t.status == "env_failure" for t in done) / len(done))
            log_metric("simrl/perturbations", sum(len(t.info.get("perturbations", [])) for t in done) / len(done))
        return [None if t is None or t.status == "env_failure" else float(t.reward) for t in trajs]

    def _score(self, task: Task, answer: str | None) -> float | None:
        try:
            return float(spec(self.env_id).score_final(task, answer or "")[0])
        except ValueError:  # a record write: only the environment holding the records can score it
            return None

    def callback(self) -> Any:
        """A ``transformers.TrainerCallback`` that sets ``progress`` to ``global_step / max_steps`` at each
        step, so a schedule's curriculum follows training as in ``simrl train``."""
        from transformers import TrainerCallback

        source = self

        class SimrlProgress(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                source.progress = state.global_step / max(1, state.max_steps)

        return SimrlProgress()

    def record(self, traj: Trajectory) -> None:
        """Append a finished rollout to the ``trajectories`` file (if any)."""
        if self._writer is not None:
            self._writer.write(traj)

    def close(self) -> None:
        """Close every environment still open and the trajectories file (idempotent)."""
        for instance in list(self._live):
            instance._close()
        if self._writer is not None:
            self._writer.close()


def _arm(arm: str | Arm | dict[str, Any]) -> Arm:
    """An :class:`Arm` from ``"real"``, an Arm, or its fields.

    Raises:
        SimrlError: another string, or fields the recipe's arm validation refuses.
    """
    if isinstance(arm, Arm):
        return arm
    if arm == "real":
        return Arm(environment="real")
    if isinstance(arm, dict):
        from pydantic import ValidationError

        try:
            return Arm(**arm)
        except ValidationError as err:
            raise SimrlError(f"arm {arm}: {err.errors()[0]['msg']}") from None
    raise SimrlError(f"arm {arm!r}: give 'real', an Arm or its fields as a dict (e.g. {{'environment': "
                     "'world_model', 'backend': 'oracle', 'schedule': 'mcpmark'}}); a recipe's arm by name: "
                     "SimrlTRL.from_recipe(recipe, arm)")
