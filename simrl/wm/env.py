"""The world-model environment: the same tools and task as a real environment, observations predicted.

:class:`WorldModelEnv` keeps the real environment's id (``search``, ``mcp-world``, ``mcp``) and tool
schemas (search: :data:`~simrl.envs.search.SEARCH_TOOLS`; records: the record server's own tool list;
any MCP server: its listed tools). Each tool call's observation comes from a world model given the
tool definitions, the world's facts for the task (its simulation instruction), this episode's earlier
(action, observation) pairs and the call, in the Qwen-AgentWorld layout (:mod:`simrl.wm.prompts`);
or, with backend ``oracle``, from the world's ground truth (:mod:`simrl.wm.oracle`).

Reliability: responses go through a :class:`~simrl.wm.cache.ResponseCache`; a retryable backend error
is retried ``max_retries`` times with jittered exponential backoff (``backoff * 2**k * U(0.5, 1.5)``
seconds); an output without a ``<predicted_observation>`` block is re-sampled ``max_parse_retries``
times (temperature at least 0.6, a new seed) and then **marked**, not failed: the observation is
the raw text without ``<think>``, and the step's ``info["unparsed"]`` is True. A backend failure
that survives the retries ends the episode as ``truncated`` with ``info["env_failure"] = True``
(excluded from the training signal); ``step`` never raises.

Ground truth stays in the world: calls are validated against the tool schemas by the environment,
not the model; a records write is applied to a per-episode shadow copy of the records with the
server's own semantics, and write tasks are scored on that copy. Leakage guard: the policy sees only
``task.policy_view()`` and parsed predictions; prediction lines that echo the instruction blocks
(facts header, target query, reference answer, control instruction) are removed.

Control (controllable simulation, DESIGN.md §1): :meth:`WorldModelEnv.set_control` gives the calls
of the NEXT step a control instruction each (a perturbation request), appended to that call's last
user message only (so it is part of the response-cache key); with a compliance check and
``retries``, a prediction that fails the check is re-sampled (temperature at least 0.6, a new seed)
up to ``retries`` times. The step's ``info["control"]`` lists ``{"call", "attempts", "complied"}``
per controlled call. Calls marked ``no_effect`` (a perturbation that replaces the call, e.g. an
error) never reach the records ground truth, so a failed write changes nothing. The ``oracle``
cannot follow instructions: it returns the clean ground truth, the check fails, and a caller such
as :class:`~simrl.perturb.inject.PerturbedEnv` falls back to injecting the perturbation in code.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simrl.envs.base import Environment, unavailable_step
from simrl.errors import SimrlError
from simrl.types import Action, Observation, Step, ToolCall, ToolResult
from simrl.wm import oracle, prompts
from simrl.wm.backend import BackendError, Sampling, WorldModelBackend
from simrl.wm.cache import ResponseCache, cache_key
from simrl.wm.oracle import WRITE_TOOLS
from simrl.world.schema import RecordsGold, Task

SUPPORTED = ("search", "mcp-world", "mcp")
RETRY_SEED_STRIDE = 7919
"""Seed offset between compliance re-samples (parse re-samples add 1, 2, ... on top)."""


@dataclass
class _Control:
    """Control of the calls of one step (from :meth:`WorldModelEnv.set_control`), by call index."""

    instructions: dict[int, str] = field(default_factory=dict)
    checks: dict[int, Callable[[str], bool]] = field(default_factory=dict)
    retries: int = 0
    no_effect: frozenset[int] = frozenset()


@dataclass
class _CallControl:
    """What applies to one call: instruction text (None: none), compliance check, re-samples, effect."""

    text: str | None = None
    check: Callable[[str], bool] | None = None
    retries: int = 0
    effect: bool = True


def _passes(check: Callable[[str], bool], text: str) -> bool:
    """``check(text)`` as a bool; a check that raises counts as not complied (``step`` never raises)."""
    try:
        return bool(check(text))
    except Exception:  # noqa: BLE001 - a buggy check must not end the episode
        return False


class WorldModelEnv(Environment):
    """A real environment's tools, with observations from a world model or the oracle.

    Args:
        env_id: the simulated environment's id: ``search``, ``mcp-world`` or ``mcp``.
        world: the world folder (``search``, ``mcp-world``; optional for ``mcp``: facts only).
        backend: a :class:`~simrl.wm.backend.WorldModelBackend`, or ``"oracle"`` (ground truth).
        sampling: sampling parameters of every world-model call (default greedy, 1024 tokens); with
            temperature > 0 and no seed, each episode samples with its own ``reset`` seed.
        cache: the response cache (default: none).
        max_retries: retries of a retryable backend error (so at most ``1 + max_retries`` calls).
        backoff: base delay of the retries, seconds.
        max_parse_retries: re-samples of an output without a prediction block before marking it.
        prompt_template: a user template file (see :mod:`simrl.wm.prompts`) replacing the domain prompt.
        max_turns: steps per episode before it is truncated (None: no limit).
        tools: tool schemas for ``mcp`` (else listed from ``server_command`` / ``server_url``).
        server_command, server_url: for ``mcp``: the real server whose tool list is used.
        control: a control instruction added to every world-model call (``self.control`` may be set
            between steps; the oracle ignores it). Never shown to the policy. Per-call, per-step
            instructions: :meth:`set_control`.
        own_backend: close ``backend`` when the environment closes.

    Attributes:
        backend_name: ``oracle`` or the backend's name (for the trajectory's ``backend`` field).
        stats: counters: ``calls`` (world-model requests sent), ``retries``, ``parse_retries``,
            ``unparsed``, ``failures``, ``control_retries`` (compliance re-samples).

    Raises:
        SimrlError: unknown ``env_id``; no world where one is needed; ``oracle`` for ``mcp``.
    """

    def __init__(self, env_id: str, world: str | Path | None = None,
                 backend: WorldModelBackend | str = "oracle", *, sampling: Sampling | None = None,
                 cache: ResponseCache | None = None, max_retries: int = 3, backoff: float = 0.05,
                 max_parse_retries: int = 1, prompt_template: str | Path | None = None,
                 max_turns: int | None = None, tools: list[dict[str, Any]] | None = None,
                 server_command: str | list[str] | None = None, server_url: str | None = None,
                 control: str | None = None, own_backend: bool = False) -> None:
        if env_id not in SUPPORTED:
            raise SimrlError(f"no world-model version of env {env_id!r}; supported: {', '.join(SUPPORTED)}")
        if isinstance(backend, str) and backend != "oracle":
            raise SimrlError(f"backend must be a WorldModelBackend or 'oracle', got {backend!r}")
        if env_id != "mcp" and world is None:
            raise SimrlError(f"the world-model env {env_id!r} needs a world folder")
        if env_id == "mcp" and backend == "oracle":
            raise SimrlError("the oracle needs a world's ground truth: use it with search or mcp-world")
        if env_id == "mcp" and tools is None and not (server_command or server_url):
            raise SimrlError("the world-model env 'mcp' needs tools=... or server_command / server_url")
        self.env_id, self.world = env_id, Path(world) if world is not None else None
        if self.world is not None:
            from simrl.world.io import load_manifest

            load_manifest(self.world)
        self.backend, self.own_backend = backend, own_backend
        self.backend_name = "oracle" if backend == "oracle" else backend.name  # type: ignore[union-attr]
        self.sampling = sampling or Sampling()
        self.cache = cache if cache is not None else ResponseCache.off()
        self.max_retries, self.backoff, self.max_parse_retries = max_retries, backoff, max_parse_retries
        self.template = prompts.load_template(prompt_template) if prompt_template else None
        self.max_turns, self.control = max_turns, control
        self.tools: list[dict[str, Any]] = list(tools) if tools is not None else []
        self._server = (server_command, server_url)
        self.stats = {"calls": 0, "retries": 0, "parse_retries": 0, "unparsed": 0, "failures": 0,
                      "control_retries": 0}
        self._validators: dict[str, Any] = {}
        self._task: Task | None = None
        self._truth: Any = None
        self._system, self._history, self._sampling = "", [], self.sampling
        self._turns, self._done, self._closed, self._episodes = 0, False, False, 0
        self._workdir: Path | None = None
        self._cleanup: Any = None
        self._pending = _Control()

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
        self._pending = _Control({int(k): str(v) for k, v in instructions.items()}, dict(checks or {}), retries,
                                 frozenset(int(i) for i in no_effect))

    def _call_control(self, control: _Control, index: int) -> _CallControl:
        """The control of call ``index`` of this step: ``self.control`` and the step's instruction, joined."""
        texts = [t.strip() for t in (self.control, control.instructions.get(index)) if t and t.strip()]
        return _CallControl("\n\n".join(texts) or None, control.checks.get(index), control.retries,
                            index not in control.no_effect)

    # -- episode --------------------------------------------------------------------------------
    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Start an episode: the observation is the task prompt and the real tool schemas, nothing else.

        Raises:
            SimrlError: the environment is closed; a records task in ``search``; tools not listable.
        """
        if self._closed:
            raise SimrlError("this world-model environment is closed; make a new one")
        if self.env_id == "search" and task.type == "records":
            raise SimrlError(f"task {task.task_id} is a records task: its data lives in the world's record "
                             "server, not the corpus; run it with env `mcp-world`")
        self._close_truth()
        self.tools = await self._tool_list()
        self._task, self._history, self._turns, self._done = task, [], 0, False
        self._pending = _Control()  # control set for a step that never came does not carry over
        self._sampling = self.sampling  # sampled (temperature > 0) without a seed: the episode's seed
        if self.sampling.temperature > 0 and self.sampling.seed is None:
            self._sampling = self.sampling.model_copy(update={"seed": seed})
        self._truth = await self._open_truth()
        instruction = oracle.instructions_of(self.world).get(task.task_id) if self.world else None
        domain = prompts.ENV_DOMAINS.get(self.env_id, "generic")
        self._system = prompts.system_prompt(domain, self.tools, instruction, self.template)
        return Observation(text=task.policy_view()["prompt"], tools=self.tools)

    async def step(self, action: Action) -> Step:
        """Observe each tool call of ``action`` (or score its final answer); never raises."""
        if (over := unavailable_step(self._closed, self._task is not None, self._done)) is not None:
            return over
        self._turns += 1
        control, self._pending = self._pending, _Control()  # applies to this step only
        if action.is_final:
            self._done = True
            reward, info = self._score(action.answer or "")
            return Step(observation=Observation(text="Answer received."), reward=reward, terminated=True,
                        info=info | {"turns": self._turns, "backend": self.backend_name})
        if not action.tool_calls:
            return self._after([], "Error: the action has neither tool calls nor an answer", {})
        results, info, controlled = [], {}, []
        for index, call in enumerate(action.tool_calls):
            ctl = self._call_control(control, index)
            try:
                result, notes = await self._observe(call, ctl)
            except BackendError as err:
                self.stats["failures"] += 1
                reason = f"world model {self.backend_name} failed: {err}"
                results.append(ToolResult(name=call.name, content=reason, is_error=True, call_id=call.call_id))
                self._done = True
                return Step(observation=Observation(text=f"environment failure: {reason}", results=results),
                            truncated=True, info=info | {"env_failure": True, "error": reason,
                                                         "backend": self.backend_name})
            results.append(result)
            attempts, complied = notes.pop("control_attempts", 0), notes.pop("complied", None)
            if index in control.instructions:
                controlled.append({"call": index, "attempts": attempts, "complied": complied})
            for k, v in notes.items():
                info[k] = info.get(k, 0) + v if isinstance(v, int) and not isinstance(v, bool) else v
        if controlled:
            info["control"] = controlled
        return self._after(results, self._render(results), info)

    def _after(self, results: list[ToolResult], text: str, info: dict[str, Any]) -> Step:
        truncated = self.max_turns is not None and self._turns >= self.max_turns
        self._done = truncated
        info = {"turns": self._turns} | info | ({"truncated_reason": "max_turns"} if truncated else {})
        return Step(observation=Observation(text=text, results=results), truncated=truncated, info=info)

    def _render(self, results: list[ToolResult]) -> str:
        if self.env_id == "search":
            return "\n\n".join(r.content for r in results)
        from simrl.envs.mcp_env import render_results

        return render_results(results)

    def _score(self, answer: str) -> tuple[float, dict[str, Any]]:
        from simrl.reward.task import score_answer, score_state

        task = self._task
        assert task is not None
        if isinstance(task.gold, RecordsGold) and task.gold.kind == "write":
            store = getattr(self._truth, "store", None)
            if store is None:
                return 0.0, {"score_error": "a records write task needs the world's records (env mcp-world)"}
            score = score_state(task, store.read)
        else:
            score = score_answer(task, answer)
        return score.reward, {"success": score.success, "metrics": score.metrics}

    # -- one tool call ------------------------------------------------------------------------------
    async def _observe(self, call: ToolCall, ctl: _CallControl) -> tuple[ToolResult, dict[str, Any]]:
        """One call's result and step-info notes; raises BackendError when the world model fails.

        Notes ``control_attempts`` (answers produced: 0 for a call the environment rejected) and
        ``complied`` (the check's verdict, when there is a check) are for :meth:`step`.
        """
        notes: dict[str, Any] = {"control_attempts": 0}
        rejected = self._reject(call)
        if rejected is not None:
            result = ToolResult(name=call.name, content=rejected, is_error=True, call_id=call.call_id)
        elif self.backend == "oracle":  # cannot follow a control instruction: the clean ground truth
            if not ctl.effect and call.name in WRITE_TOOLS:
                result = ToolResult(name=call.name, content=f"Error executing tool {call.name}: not applied",
                                    is_error=True, call_id=call.call_id)
            else:
                result = await self._truth.call(call)
            notes["control_attempts"] = 1
            if ctl.check is not None:
                notes["complied"] = _passes(ctl.check, result.content)
        else:
            text, notes = await self._predict(call, ctl)
            result = ToolResult(name=call.name, content=text, is_error=prompts.looks_like_error(text), call_id=call.call_id)
            if self._truth is not None and call.name in WRITE_TOOLS and ctl.effect:
                truth = await self._truth.call(call)  # the ground truth of the write, kept in the world
                notes["shadow_error" if truth.is_error else "shadow_ok"] = 1
        self._history.append((call.name, dict(call.arguments), result.content))
        return result, notes

    def _reject(self, call: ToolCall) -> str | None:
        """The environment's own error for an unknown tool or (world models only) schema-invalid arguments."""
        known = [t["function"]["name"] for t in self.tools]
        if call.name not in known:
            if self.env_id == "search":
                return f"Error: unknown tool {call.name!r}; available: {', '.join(known)}"
            return f"unknown tool {call.name!r}; available tools: {', '.join(known)}"
        if self.backend == "oracle":
            return None  # the real tools validate their own arguments
        import jsonschema

        if call.name not in self._validators:
            schema = next(t for t in self.tools if t["function"]["name"] == call.name)["function"]
            params = schema.get("parameters") or {"type": "object"}
            self._validators[call.name] = jsonschema.validators.validator_for(params)(params)
        error = jsonschema.exceptions.best_match(self._validators[call.name].iter_errors(dict(call.arguments)))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        reason = f"invalid arguments{f' at {where}' if where else ''}: {error.message}"
        return f"Error: {reason}" if self.env_id == "search" else f"Error executing tool {call.name}: {reason}"

    async def _predict(self, call: ToolCall, ctl: _CallControl) -> tuple[str, dict[str, Any]]:
        """The guarded prediction of one call, re-sampled while it fails the control check (if any).

        Returns ``(text, notes)``; notes add ``control_attempts`` (samples taken, >= 1) and, with a
        check, ``complied``. Raises BackendError when the world model fails.
        """
        messages = prompts.build_messages(self._system, self._history, call.name, dict(call.arguments), ctl.text)
        text, notes = await self._sample(messages, self._sampling, ctl.text)
        attempts = 1
        while ctl.check is not None and not _passes(ctl.check, text) and attempts <= ctl.retries:
            self.stats["control_retries"] += 1
            sampling = self._sampling.model_copy(update={
                "temperature": max(self._sampling.temperature, 0.6),
                "seed": (self._sampling.seed or 0) + RETRY_SEED_STRIDE * attempts})
            text, more = await self._sample(messages, sampling, ctl.text)
            attempts += 1
            for k, v in more.items():
                notes[k] = notes.get(k, 0) + v if isinstance(v, int) and not isinstance(v, bool) else v
        notes["control_attempts"] = attempts
        if ctl.check is not None:
            notes["complied"] = _passes(ctl.check, text)
        return text, notes

    async def _sample(self, messages: list[dict[str, Any]], sampling: Sampling,
                      control: str | None) -> tuple[str, dict[str, Any]]:
        """One guarded prediction: re-sampled ``max_parse_retries`` times without a prediction block, then marked."""
        notes: dict[str, Any] = {}
        for attempt in range(self.max_parse_retries + 1):
            raw = await self._generate(messages, sampling)
            predicted = prompts.parse_prediction(raw)
            if predicted is not None:
                return self._guard(predicted, notes, control)
            if attempt < self.max_parse_retries:
                self.stats["parse_retries"] += 1
                notes["parse_retries"] = notes.get("parse_retries", 0) + 1
                sampling = sampling.model_copy(update={"temperature": max(sampling.temperature, 0.6),
                                                       "seed": (sampling.seed or 0) + attempt + 1})
        self.stats["unparsed"] += 1
        notes["unparsed"] = True
        return self._guard(prompts.strip_think(raw), notes, control)

    @staticmethod
    def _guard(text: str, notes: dict[str, Any], control: str | None) -> tuple[str, dict[str, Any]]:
        """Remove prediction lines that echo the world model's instruction blocks (leakage guard).

        A line goes when it holds a block header (facts, control), ``Reference answer:`` /
        ``Target query:``, or one whole line (8+ characters) of the call's control instruction.
        """
        markers = [prompts.FACTS_HEADER, prompts.CONTROL_HEADER, "Reference answer:", "Target query:"]
        markers += [ln.strip() for ln in (control or "").splitlines() if len(ln.strip()) >= 8]
        lines = text.splitlines()
        kept = [ln for ln in lines if not any(m in ln for m in markers)]
        if len(kept) != len(lines):
            notes["redacted_lines"] = len(lines) - len(kept)
        return "\n".join(kept), notes

    async def _generate(self, messages: list[dict[str, Any]], sampling: Sampling) -> str:
        """The raw completion: from the cache, else from the backend with bounded, jittered retries."""
        backend = self.backend
        assert isinstance(backend, WorldModelBackend)
        key = cache_key(backend.name, backend.model, messages, sampling)
        cached = self.cache.get(key)  # replay mode: a miss raises a non-retryable BackendError
        if cached is not None:
            return cached
        for attempt in range(self.max_retries + 1):
            self.stats["calls"] += 1
            try:
                text = await backend.generate(messages, sampling)
                break
            except BackendError as err:
                if not err.retryable or attempt >= self.max_retries:
                    raise
            except Exception as err:  # noqa: BLE001 - a backend bug must not end the run either
                raise BackendError(f"{type(err).__name__}: {err}", retryable=False) from err
            self.stats["retries"] += 1
            await asyncio.sleep(self.backoff * 2 ** attempt * (0.5 + random.random()))
        self.cache.put(key, text, backend.name, backend.model)
        return text

    # -- tools and ground truth ---------------------------------------------------------------------
    async def _tool_list(self) -> list[dict[str, Any]]:
        if self.env_id == "search":
            from simrl.envs.search import SEARCH_TOOLS

            return SEARCH_TOOLS
        if self.env_id == "mcp-world":
            return await oracle.record_tools(self.world)
        if self.tools:
            return self.tools
        return await oracle.list_mcp_tools(*self._server)

    async def _open_truth(self) -> Any:
        if self.env_id == "search" and self.backend == "oracle":
            return oracle.SearchTruth(await asyncio.to_thread(oracle.shared_index, self.world))
        if self.env_id != "mcp-world":
            return None
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="simrl-wm-env-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self._episodes += 1
        db = self._workdir / f"episode-{self._episodes}.sqlite"
        store = await asyncio.to_thread(oracle.episode_store, self.world, db, self.backend == "oracle")
        return oracle.RecordsTruth(store)

    def _close_truth(self) -> None:
        truth, self._truth = self._truth, None
        if truth is not None:
            truth.close()
            store = getattr(truth, "store", None)
            if store is not None:
                Path(store.path).unlink(missing_ok=True)

    async def close(self) -> None:
        """End the environment: its episode stores go, an owned backend is closed; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close_truth()
        if self._cleanup is not None:
            self._cleanup()
        if self.own_backend and isinstance(self.backend, WorldModelBackend):
            await self.backend.close()
