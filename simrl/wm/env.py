"""The world-model environment: the same tools and task as a real environment, observations predicted.

:class:`WorldModelEnv` keeps the real environment's id (``search``, ``mcp-world``, ``mcp``) and tool
schemas (search: :data:`~simrl.envs.search.SEARCH_TOOLS`; records: the record server's own tool list;
any MCP server: its listed tools). Each tool call's observation comes from a world model given the
tool definitions, the world's facts for the task (its simulation instruction), this episode's earlier
(action, observation) pairs and the call, in the Qwen-AgentWorld layout (:mod:`simrl.wm.prompts`);
or, with backend ``oracle``, from the world's ground truth (:mod:`simrl.wm.oracle`).

Reliability: responses go through a :class:`~simrl.wm.cache.ResponseCache`; the ``openai`` backend
retries transient failures itself (the SDK's retries, ``Retry-After`` honoured; its ``max_retries``
is a backend option); an output without a ``<predicted_observation>`` block is re-sampled ``max_parse_retries``
times (temperature at least 0.6, a new seed) and then **marked**, not failed: the observation is
the raw text without ``<think>``, and the step's ``info["unparsed"]`` is True. A backend failure
that remains ends the episode as ``truncated`` with ``info["env_failure"] = True``
(excluded from the training signal); ``step`` never raises.

Ground truth stays in the world: calls are validated against the tool schemas by the environment,
not the model; a records write is applied to a per-episode shadow copy of the records with the
server's own semantics, and write tasks are scored on that copy. Leakage guard: the policy sees only
``task.policy_view()`` and parsed predictions, each checked by :mod:`simrl.wm.leak_guard` against the
episode's gold answers, simulation facts, tool definitions and the call's control instruction, with
the real observation of the call (when the world has one) as what may legitimately be shown.
Bounds: a prediction is cut at ``max_observation_chars``, and the earlier observations re-sent to
the world model at ``max_history_chars`` (both recorded in the step's info).

Control (controllable simulation, docs/design.md §1): :meth:`WorldModelEnv.set_control` gives the calls
of the NEXT step a control instruction each (a perturbation request), appended to that call's last
user message only (so it is part of the response-cache key); with a compliance check and
``retries``, a prediction that fails the check is re-sampled (temperature at least 0.6, a new seed)
up to ``retries`` times. The step's ``info["control"]`` lists ``{"call", "attempts", "complied"}``
per controlled call (and ``"leaked": True`` when a sample leaked hidden text, see
:mod:`simrl.wm.leak_guard`: such a call never counts as complied first try). Calls marked ``no_effect`` (a perturbation that replaces the call, e.g. an
error) never reach the records ground truth, so a failed write changes nothing. The ``oracle``
cannot follow instructions: it returns the clean ground truth, the check fails, and a caller such
as :class:`~simrl.perturb.inject.PerturbedEnv` falls back to injecting the perturbation in code.

Layout: this module is the episode (reset, step, control, close); the guarded prediction is
:mod:`simrl.wm.env_predict`, the world's side (tools, argument checks, ground truth, scoring)
:mod:`simrl.wm.env_truth`, the per-call control data :mod:`simrl.wm.env_control`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from simrl.envs.base import Environment, EnvSpec, spec, specs, write_tools
from simrl.errors import SimrlError
from simrl.types import Action, Observation, Step, ToolCall, ToolResult
from simrl.wm import oracle, prompts
from simrl.wm.backend import BackendError, Sampling, WorldModelBackend
from simrl.wm.cache import ResponseCache
from simrl.wm.env_control import CallControl, StepControl, call_control, passes
from simrl.wm.env_predict import (
    MAX_HISTORY_CHARS,
    MAX_OBSERVATION_CHARS,
    RETRY_SEED_STRIDE,
    Predictor,
    add_notes,
    bounded_history,
)
from simrl.wm.env_truth import CallValidator, EpisodeTruth, adapter, has_truth, oracle_envs, score
from simrl.wm.leak_guard import Secrets, call_guard, episode_secrets
from simrl.world.schema import Task

__all__ = ["RETRY_SEED_STRIDE", "WorldModelEnv"]


class WorldModelEnv(Environment):
    """A real environment's tools, with observations from a world model or the oracle.

    Args:
        env: the simulated environment's spec (:class:`~simrl.envs.registry.EnvSpec`), or its registered id
            (looked up once): any environment with a world-model version.
        world: the world folder (``search``, ``mcp-world``; optional for ``mcp``: facts only).
        backend: a :class:`~simrl.wm.backend.WorldModelBackend`, or ``"oracle"`` (ground truth).
        sampling: sampling parameters of every world-model call (default greedy, 1024 tokens); with
            temperature > 0 and no seed, each episode samples with its own ``reset`` seed.
        cache: the response cache (default: none).
        max_parse_retries: re-samples of an output without a prediction block before marking it.
        prompt_template: a user template file (see :mod:`simrl.wm.prompts`) replacing the domain prompt.
        tools: tool schemas for ``mcp`` (else listed from ``server_command`` / ``server_url``).
        server_command, server_url: for ``mcp``: the real server whose tool list is used.
        control: a control instruction added to every world-model call (``self.control`` may be set
            between steps; the oracle ignores it). Never shown to the policy. Per-call, per-step
            instructions: :meth:`set_control`.
        own_backend: close ``backend`` when the environment closes.
        max_observation_chars: cap on one predicted observation (characters; longer ones are cut and
            the step's info records ``observation_truncated`` and ``observation_chars``).
        max_history_chars: cap on the earlier observations re-sent to the world model (characters;
            the oldest are replaced by a placeholder and the step's info records ``history_elided``).

    Attributes:
        backend_name: ``oracle`` or the backend's name (for the trajectory's ``backend`` field).
        stats: counters: ``calls`` (world-model requests sent), ``parse_retries``,
            ``unparsed``, ``failures``, ``control_retries`` (compliance re-samples).

    Raises:
        SimrlError: unknown ``env``; no world where one is needed; ``oracle`` for ``mcp``; a cap
            below 1.
    """

    controllable = True

    def __init__(self, env: EnvSpec | str, world: str | Path | None = None,
                 backend: WorldModelBackend | str = "oracle", *, sampling: Sampling | None = None,
                 cache: ResponseCache | None = None,
                 max_parse_retries: int = 1, prompt_template: str | Path | None = None,
                 tools: list[dict[str, Any]] | None = None,
                 server_command: str | list[str] | None = None, server_url: str | None = None,
                 control: str | None = None, own_backend: bool = False,
                 max_observation_chars: int = MAX_OBSERVATION_CHARS,
                 max_history_chars: int = MAX_HISTORY_CHARS) -> None:
        env_spec = spec(env) if isinstance(env, str) else env
        self._adapter = adapter(env_spec)  # SimrlError for an env without a world-model version
        env_id = env_spec.id
        if isinstance(backend, str) and backend != "oracle":
            raise SimrlError(f"backend must be a WorldModelBackend or 'oracle', got {backend!r}")
        if env_spec.needs_world and world is None:
            raise SimrlError(f"the world-model env {env_id!r} needs a world folder")
        if backend == "oracle" and not has_truth(self._adapter):
            raise SimrlError(f"the oracle needs a world's ground truth: use it with {' or '.join(oracle_envs())}")
        if env_spec.needs_server and tools is None and not (server_command or server_url):
            raise SimrlError(f"the world-model env {env_id!r} needs tools=... or server_command / server_url")
        if max_history_chars < 1:
            raise SimrlError(f"max_history_chars must be >= 1, got {max_history_chars}")
        self.max_history_chars = max_history_chars
        self.spec, self.env_id, self.world = env_spec, env_id, Path(world) if world is not None else None
        if self.world is not None:
            from simrl.world.io import check_once

            check_once(self.world)
        self.backend, self.own_backend = backend, own_backend
        self.backend_name = "oracle" if backend == "oracle" else backend.name  # type: ignore[union-attr]
        self.sampling = sampling or Sampling()
        self.template = prompts.load_template(prompt_template) if prompt_template else None
        self.control = control
        self.tools: list[dict[str, Any]] = list(tools) if tools is not None else []
        self._server = (server_command, server_url)
        self.stats = {"calls": 0, "parse_retries": 0, "unparsed": 0, "failures": 0,
                      "control_retries": 0}
        self._predictor = None if isinstance(backend, str) else Predictor(
            backend, cache if cache is not None else ResponseCache.off(), max_parse_retries=max_parse_retries,
            stats=self.stats, max_observation_chars=max_observation_chars)
        self._validator = CallValidator(self._adapter, check_arguments=backend != "oracle")
        self._truth = EpisodeTruth(self._adapter, self.world, oracle_backend=backend == "oracle")
        self._task: Task | None = None
        self._system, self._history, self._sampling = "", [], self.sampling
        self._closed = False
        self._pending = StepControl()
        self._secrets = Secrets()

    def set_control(self, instructions: dict[int, str], *, checks: dict[int, Callable[[str], bool]] | None = None,
                    retries: int = 0, no_effect: Iterable[int] = ()) -> None:
        """Control the calls of the NEXT step only (then cleared; ``{}`` clears it now).

        Args:
            instructions: call index in the next action -> control instruction text, appended to that
                call's world-model input as a ``**Control Instruction:**`` block (after ``self.control``,
                if set); never part of anything the policy sees.
            checks: call index -> ``check(predicted text) -> bool`` (e.g. a perturbation's ``complies``);
                a prediction that fails is re-sampled up to ``retries`` times.
            retries: compliance re-samples per call (temperature at least 0.6, seed
                ``seed + RETRY_SEED_STRIDE * k``); the oracle is never re-asked.
            no_effect: call indices whose effect on the records ground truth is not applied (the
                perturbation replaces the call: an error means the write did not happen).

        Raises:
            SimrlError: ``retries`` below 0.
        """
        if retries < 0:
            raise SimrlError(f"control retries must be >= 0, got {retries}")
        self._pending = StepControl({int(k): str(v) for k, v in instructions.items()}, dict(checks or {}), retries,
                                    frozenset(int(i) for i in no_effect))

    # -- episode --------------------------------------------------------------------------------
    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Start an episode: the observation is the task prompt and the real tool schemas, nothing else.

        Raises:
            SimrlError: a task of a type the environment does not serve (a records task in ``search``); tools
                not listable.
        """
        served = self.spec.task_types
        if served and task.type not in served:
            takers = [k for k, s in specs().items() if task.type in s.task_types]
            raise SimrlError(f"task {task.task_id} is a {task.type} task, which env {self.env_id!r} does not serve"
                             + (f"; run it with env {' or '.join(takers)}" if takers else ""))
        await self._truth.close()
        assert self._adapter.tool_list is not None  # adapter() checked it
        self.tools = await self._adapter.tool_list(self.world, self.tools, self._server)
        self._task, self._history = task, []
        self._pending = StepControl()  # control set for a step that never came does not carry over
        self._sampling = self.sampling  # sampled (temperature > 0) without a seed: the episode's seed
        if self.sampling.temperature > 0 and self.sampling.seed is None:
            self._sampling = self.sampling.model_copy(update={"seed": seed})
        await self._truth.open(task, seed)
        if self.backend != "oracle":  # what a world model is prompted with and guarded by (the oracle reads neither)
            instruction = oracle.instructions_of(self.world).get(task.task_id) if self.world else None
            self._system = prompts.system_prompt(self._adapter, self.tools, instruction, self.template)
            self._secrets = episode_secrets(task, instruction, self.tools)
        return Observation(text=task.policy_view()["prompt"], tools=self.tools)

    async def step(self, action: Action) -> Step:
        """Observe each tool call of ``action`` (or score its final answer); never raises."""
        control, self._pending = self._pending, StepControl()  # applies to this step only
        if action.is_final:
            reward, info = self.score_final(action.answer or "")
            return Step(observation=Observation(text="Answer received."), reward=reward, terminated=True,
                        info=info | {"backend": self.backend_name})
        if not action.tool_calls:
            return Step(observation=Observation(text="Error: the action has neither tool calls nor an answer"))
        results, info, controlled = [], {}, []
        for index, call in enumerate(action.tool_calls):
            ctl = call_control(self.control, control, index)
            try:
                result, notes = await self._observe(call, ctl)
            except BackendError as err:
                self.stats["failures"] += 1
                reason = f"world model {self.backend_name} failed: {err}"
                results.append(ToolResult(name=call.name, content=reason, is_error=True, call_id=call.call_id))
                return Step(observation=Observation(text=f"environment failure: {reason}", results=results),
                            truncated=True, info=info | {"env_failure": True, "error": reason,
                                                         "backend": self.backend_name})
            results.append(result)
            attempts, complied = notes.pop("control_attempts", 0), notes.pop("complied", None)
            if index in control.instructions:  # a leaked instruction is not compliance (leak_guard)
                controlled.append({"call": index, "attempts": attempts, "complied": complied}
                                  | ({"leaked": True} if notes.get("leaked") else {}))
            add_notes(info, notes)
        if controlled:
            info["control"] = controlled
        return Step(observation=Observation(text=self._render(results), results=results), info=info)

    def _render(self, results: list[ToolResult]) -> str:
        return self.spec.render(results)

    def score_final(self, answer: str) -> tuple[float, dict[str, Any]]:
        """The episode's reward and info for ``answer`` (also read by ``simrl.trainers.verl.sessions.records_state``)."""
        assert self._task is not None
        return score(self._task, answer, self._truth.current, self.spec.score_final)

    # -- one tool call ------------------------------------------------------------------------------
    async def _observe(self, call: ToolCall, ctl: CallControl) -> tuple[ToolResult, dict[str, Any]]:
        """One call's result and step-info notes; raises BackendError when the world model fails.

        Notes ``control_attempts`` (answers produced: 0 for a call the environment rejected) and
        ``complied`` (the check's verdict, when there is a check) are for :meth:`step`.
        """
        notes: dict[str, Any] = {"control_attempts": 0}
        rejected = self._validator.reject(call, self.tools)
        if rejected is not None:
            result = ToolResult(name=call.name, content=rejected, is_error=True, call_id=call.call_id)
        elif self.backend == "oracle":  # cannot follow a control instruction: the clean ground truth
            if not ctl.effect and call.name in write_tools():
                result = ToolResult(name=call.name, content=f"Error executing tool {call.name}: not applied",
                                    is_error=True, call_id=call.call_id)
            else:
                result = await self._truth.current.call(call)
            notes["control_attempts"] = 1
            if ctl.check is not None:
                notes["complied"] = passes(ctl.check, result.content)
        else:
            result, notes = await self._predict(call, ctl)
        self._history.append((call.name, dict(call.arguments), result.content))
        return result, notes

    async def _predict(self, call: ToolCall, ctl: CallControl) -> tuple[ToolResult, dict[str, Any]]:
        """A world model's observation of ``call``, leak-guarded against the real one (when there is one)."""
        assert self._predictor is not None
        reference, shadow = None, {}
        if self._truth.current is not None and call.name in write_tools() and ctl.effect:
            truth = await self._truth.current.call(call)  # the ground truth of the write, kept in the world
            reference, shadow = truth.content, {"shadow_error" if truth.is_error else "shadow_ok": 1}
        guard = call_guard(self._secrets, ctl.text, dict(call.arguments), reference,  # a read's real observation:
                           None if reference is not None else (lambda: self._truth.reference(call)))  # when needed
        history, elided = bounded_history(self._history, self.max_history_chars)
        messages = prompts.build_messages(self._system, history, call.name, dict(call.arguments), ctl.text)
        text, notes = await self._predictor.predict(messages, self._sampling, ctl, guard)
        notes |= shadow | ({"history_elided": elided} if elided else {})
        return ToolResult(name=call.name, content=text, is_error=prompts.looks_like_error(text),
                          call_id=call.call_id), notes

    async def close(self) -> None:
        """End the environment: its episode stores go, an owned backend is closed; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._truth.close()
        if self.own_backend and isinstance(self.backend, WorldModelBackend):
            await self.backend.close()
