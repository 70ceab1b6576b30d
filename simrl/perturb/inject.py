"""``PerturbedEnv``: any environment with a perturbation schedule applied to its tool results.

A Gymnasium-style wrapper (docs/design.md §5): an :class:`~simrl.envs.base.Environment` itself, same
``env_id``, that changes only what tool calls return. For each tool call it draws, from a
``random.Random`` seeded by sha256 of (schedule seed, wrapper seed, episode seed, turn, call index)
- never the global generator - whether a perturbation applies, honouring each type's rate at the
training ``progress``, its target tools and domains (environment ids), turn window and per-episode
cap, the schedule's total cap and cooldown, and recoverability. Every applied perturbation is
listed in the step's ``info["perturbations"]`` as ``{"type", "turn", "tool", "mode", "recovery"}``;
reward and termination pass through unchanged.

Modes:
    ``inject``: applied in code (guaranteed). Errors (``phase = "before"``) replace the call, which
        is not executed; other kinds rewrite its result.
    ``control``: the environment (a world-model environment) gets each perturbation's control
        instruction through ``env.set_control({call index: text})`` before the step, never through
        the policy's input; a predicted result that fails :meth:`~simrl.perturb.taxonomy.Perturbation.complies`
        is perturbed in code instead (recorded with ``mode: "inject"`` and ``fallback: true``), and so
        is one the environment reports ``leaked`` (its prediction echoed hidden text the leakage
        guard removed, :mod:`simrl.wm.leak_guard`): a leak is never compliance.
        With ``control_retries`` N > 0 and an environment whose ``set_control`` takes ``checks``
        (:meth:`simrl.wm.env.WorldModelEnv.set_control`), the world model is re-asked up to N times
        (a new sampling seed) before the fallback. Controlled records also carry ``complied`` and
        ``retries``; :attr:`PerturbedEnv.compliance` counts outcomes per type, and
        :func:`compliance_rates` aggregates them over trajectories for reports. Perturbations that
        replace the call (``phase = "before"``, errors) are passed as ``no_effect``, so the world
        model's ground truth never applies a write the policy is told failed.

Held-back content (partial responses, forced pagination) is answered by the wrapper: a call whose
``cursor`` is a continuation token, or the same call with ``"page": N``, gets the stored content and
never reaches the environment; such calls and the calls served for a down tool count as turns of
the wrapper only (the wrapped environment's own step count does not advance).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from simrl.choices import PerturbMode
from simrl.envs.base import Environment, Wrapper, find_spec, render_tagged
from simrl.errors import SimrlError
from simrl.perturb import formats as fmt
from simrl.perturb.schedule import Schedule
from simrl.perturb.taxonomy import EpisodeState, Perturbation, PerturbationType, PerturbContext
from simrl.types import Action, Observation, Step, ToolCall, ToolResult, Trajectory
from simrl.world.schema import Task

Mode = PerturbMode
OUTCOMES = ("attempts", "complied_first_try", "complied_after_retry", "fell_back", "not_applied")
"""Compliance counters per perturbation type (control mode): ``attempts`` = controlled calls that ran
= the sum of the other four (``not_applied``: neither complied nor could be injected)."""


def render(env_id: str, results: list[ToolResult]) -> str:
    """Observation text of ``results`` the way environment ``env_id`` lays it out.

    The registered spec's ``render`` (:attr:`simrl.envs.base.EnvSpec.render`); an id that is not
    registered (a stand-in environment) gets the default MCP layout (:func:`simrl.envs.base.render_tagged`).
    """
    found = find_spec(env_id)
    return (found.render if found is not None else render_tagged)(results)


@dataclass
class _CallPlan:
    """What happens to one tool call of a step: served by the wrapper (``result`` set first) or run."""

    call: ToolCall
    p: Perturbation | None = None
    ctx: PerturbContext | None = None
    result: ToolResult | None = None
    record: dict[str, Any] | None = None
    fallback: bool = False
    controlled: bool = False
    complied: bool = False
    leaked: bool = False
    retries: int = 0


def _splice(text: str, old: list[ToolResult], new: list[ToolResult]) -> str | None:
    """``text`` with each old result's content replaced by the new one, in order; ``None`` if one is missing."""
    out, pos = [], 0
    for a, b in zip(old, new):
        i = text.find(a.content, pos)
        if i < 0:
            return None
        out += [text[pos:i], b.content]
        pos = i + len(a.content)
    return "".join(out) + text[pos:]


class PerturbedEnv(Wrapper):
    """Apply a :class:`~simrl.perturb.schedule.Schedule` to an environment's tool results.

    Example:
        >>> from simrl.perturb import PerturbedEnv, Schedule
        >>> from simrl.envs.base import make
        >>> env = PerturbedEnv(make("search", world="runs/world"), Schedule.single("rate_limit", 0.5),
        ...                    progress=0.3, seed=1)  # doctest: +SKIP
        >>> step = await env.step(Action.call("web_search", query="Acme"))  # doctest: +SKIP
        >>> step.info["perturbations"]  # doctest: +SKIP
        [{'type': 'rate_limit', 'turn': 0, 'tool': 'web_search', 'mode': 'inject', 'recovery': 'retry'}]

    Args:
        env: the environment to wrap (closed by :meth:`close`).
        schedule: the schedule.
        progress: training progress in [0, 1] at which the curricula are read (:meth:`set_progress`).
        seed: wrapper seed, mixed with the schedule's and the episode's seeds.
        mode: ``inject`` or ``control`` (the environment must be ``controllable``).
        control_retries: control mode: re-asks of the world model when a prediction does not comply,
            before falling back to inject (passed to ``set_control(..., checks=, retries=)``; an
            environment that ignores them is never re-asked).

    Attributes:
        compliance: control mode: perturbation type -> :data:`OUTCOMES` counters, over every
            episode of this wrapper (a wrapper made per episode: use :func:`compliance_rates`).

    Raises:
        SimrlError: progress outside [0, 1], an unknown mode, ``control_retries`` below 0, or
            ``control`` on an environment that is not ``controllable``.
    """

    def __init__(self, env: Environment, schedule: Schedule, *, progress: float = 0.0, seed: int = 0,
                 mode: Mode = "inject", control_retries: int = 0) -> None:
        self.check_options(progress, mode)
        if control_retries < 0:
            raise SimrlError(f"control_retries must be >= 0, got {control_retries}")
        if mode == "control" and not env.controllable:
            raise SimrlError(f"environment {env.env_id!r} takes no control instructions (no set_control); "
                             "use mode inject, or a world-model environment")
        super().__init__(env)
        self.control_retries = control_retries
        self.compliance: dict[str, dict[str, int]] = {}
        self.schedule, self.seed, self.mode = schedule, seed, mode
        self._entries = schedule.entries()
        self._rates_at: float | None = None
        self._rates_now: list[float] = []
        self.set_progress(progress)
        self._state, self._schemas = EpisodeState(), {}
        self._episode_seed, self._turn = 0, 0
        self._counts: dict[str, int] = {}  # type -> applications this episode
        self._total = 0
        self._cooldown: dict[str, int] = {}  # tool -> calls still exempt

    @staticmethod
    def check_options(progress: float, mode: str) -> None:
        """Raise :class:`SimrlError` for a progress outside [0, 1] or a mode other than inject / control."""
        if mode not in ("inject", "control"):
            raise SimrlError(f"perturbation mode must be inject or control, got {mode!r}")
        if not 0.0 <= progress <= 1.0:
            raise SimrlError(f"training progress must be in [0, 1], got {progress}")

    def set_progress(self, progress: float) -> None:
        """Read the curricula at ``progress`` from now on (a trainer calls this as training advances)."""
        if not 0.0 <= progress <= 1.0:
            raise SimrlError(f"training progress must be in [0, 1], got {progress}")
        self.progress = progress

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Reset the wrapped environment and the episode's perturbation state."""
        obs = await self.env.reset(task, seed=seed)
        self._state, self._episode_seed, self._turn = EpisodeState(), seed, 0
        self._counts, self._cooldown, self._total = {}, {}, 0
        self._schemas = {t["function"]["name"]: t for t in obs.tools if "function" in t}
        return obs

    async def close(self) -> None:
        """Close the wrapped environment (safe to call twice)."""
        await self.env.close()

    async def step(self, action: Action) -> Step:
        """Step the wrapped environment with the schedule's perturbations applied to the tool results."""
        if action.is_final or not action.tool_calls:
            return await self.env.step(action)
        turn, self._turn = self._turn, self._turn + 1
        plans = [self._plan(call, i, turn) for i, call in enumerate(action.tool_calls)]
        run = [i for i, plan in enumerate(plans) if plan.result is None]
        inner, attempts = None, {}
        if run:
            if self.mode == "control":
                self._send_control([plans[i] for i in run])
            inner = await self.env.step(action if len(run) == len(plans) else  # every call runs: the action as it is
                                        action.model_copy(update={"tool_calls": [action.tool_calls[i] for i in run]}))
            if len(inner.observation.results) != len(run):  # the step did not run the calls (episode over, ...)
                return inner
            controls = [c for c in inner.info.get("control", []) if isinstance(c, dict)]
            attempts = {c.get("call"): c.get("attempts", 1) for c in controls}
            leaked = {c.get("call") for c in controls if c.get("leaked")}
            for n, (i, res) in enumerate(zip(run, inner.observation.results)):
                plans[i].retries = max(int(attempts.get(n, 1)) - 1, 0)
                plans[i].leaked = n in leaked
                plans[i].result = self._after(plans[i], res)
        results = [plan.result for plan in plans]
        records = [plan.record for plan in plans if plan.record]
        text = None
        if inner is not None and len(run) == len(plans):
            text = _splice(inner.observation.text, inner.observation.results, results)
        text = text if text is not None else render(self.env_id, results)
        info = dict(inner.info) if inner is not None else {}
        info.pop("control", None)  # the environment's per-call attempts, now in the records
        if records:
            info["perturbations"] = list(info.get("perturbations", [])) + records
        if inner is None:
            return Step(observation=Observation(text=text, results=results), info=info)
        return inner.model_copy(update={"observation": inner.observation.model_copy(update={"text": text,
                                                                                             "results": results}),
                                        "info": info})

    def _send_control(self, run: list[_CallPlan]) -> None:
        """Give the environment the control of the calls it runs this step (``{}`` when none is perturbed)."""
        instructions, checks, no_effect = {}, {}, []
        for n, plan in enumerate(run):
            p, ctx = plan.p, plan.ctx
            if p is None or ctx is None:
                continue
            plan.controlled = True
            instructions[n] = p.control_instruction(ctx)
            checks[n] = lambda text, p=p, ctx=ctx: p.complies(text, ctx)
            if p.phase == "before":
                no_effect.append(n)
        self.env.set_control(instructions, checks=checks, retries=self.control_retries, no_effect=no_effect)

    def _count(self, kind: str, outcome: str) -> None:
        counts = self.compliance.setdefault(kind, dict.fromkeys(OUTCOMES, 0))
        counts["attempts"] += 1
        counts[outcome] += 1

    # -- per call ---------------------------------------------------------------------------------
    def _plan(self, call: ToolCall, index: int, turn: int) -> _CallPlan:
        """What happens to one call: served by the wrapper (``result`` set) or run (``result`` None)."""
        plan = _CallPlan(call, result=self._serve(call))
        if plan.result is not None:
            return plan
        key = f"{self.schedule.seed}:{self.seed}:{self._episode_seed}:{turn}:{index}"
        sticky = self._state.sticky.get(call.name)
        kind = sticky.kind if sticky is not None else self._draw(call, turn, key)
        if kind is None:
            return plan
        p = sticky or self.schedule.perturbation(kind)
        ctx = PerturbContext(call=call, turn=turn, call_index=index, key=f"{key}:{kind.value}",
                             tool_schema=self._schemas.get(call.name), env_id=self.env_id, state=self._state)
        plan.p, plan.ctx = p, ctx
        if p.phase == "before" and (self.mode == "inject" or sticky is not None):
            plan.result = self._applied(plan, p.apply(call, None, ctx), "inject")
        return plan

    def _after(self, plan: _CallPlan, result: ToolResult) -> ToolResult:
        """The result of a call that ran: perturbed as planned, checked in control mode."""
        p, ctx = plan.p, plan.ctx
        if p is None or ctx is None:
            return result
        if plan.controlled and not plan.leaked and p.complies(result.content, ctx):  # leaked: not complied
            plan.complied = True
            self._count(p.kind.value, "complied_after_retry" if plan.retries else "complied_first_try")
            return self._applied(plan, result, "control") or result
        out = p.apply(plan.call, result, ctx)
        plan.fallback = out is not None and plan.controlled
        if plan.controlled:
            self._count(p.kind.value, "fell_back" if out is not None else "not_applied")
        return (self._applied(plan, out, "inject") or result) if out is not None else result

    def _applied(self, plan: _CallPlan, result: ToolResult | None, mode: str) -> ToolResult | None:
        """Count and record an applied perturbation; returns ``result``."""
        if result is None or plan.p is None or plan.ctx is None:  # the kind did not fit this call after all
            return None
        p, call = plan.p, plan.call
        self._counts[p.kind.value] = self._counts.get(p.kind.value, 0) + 1
        self._total += 1
        self._cooldown[call.name] = self.schedule.cooldown_calls
        if p.sticky:
            self._state.sticky[call.name] = p
        plan.record = {"type": p.kind.value, "turn": plan.ctx.turn, "tool": call.name, "mode": mode,
                       "recovery": p.recovery.value} | ({"fallback": True} if plan.fallback else {})
        if plan.controlled:
            plan.record |= {"complied": plan.complied, "retries": plan.retries}
        return result

    def _serve(self, call: ToolCall) -> ToolResult | None:
        """Held-back content the call asks for (continuation cursor or page), else ``None``."""
        cursor, page = call.arguments.get("cursor"), call.arguments.get("page")
        token = cursor if isinstance(cursor, str) and cursor in self._state.continuations else None
        if token is None and isinstance(page, int) and fmt.page_key(call, page) in self._state.continuations:
            token = fmt.page_key(call, page)
        held = self._state.continuations.get(token) if token is not None else None
        if held is None or held.tool != call.name:
            return None
        del self._state.continuations[token]
        self._tick(call.name)
        return ToolResult(name=call.name, content=held.content, call_id=call.call_id)

    def _tick(self, tool: str) -> bool:
        """Count one call of ``tool`` against its cooldown; True when the call is still cooling down."""
        left = self._cooldown.get(tool, 0)
        if left > 0:
            self._cooldown[tool] = left - 1
        return left > 0

    def _draw(self, call: ToolCall, turn: int, key: str) -> PerturbationType | None:
        """The perturbation type drawn for this call, or ``None``.

        One uniform number per schedule entry, in schedule order, from the call's seeded generator;
        a type is drawn when its number is below its rate and the call is in its scope; when
        several are, one of them is picked with the same generator. (The generator is made only when a type
        could be drawn: a call exempt, cooling down or past the cap, or rates all 0, draws nothing either way.)
        """
        cooling = self._tick(call.name)
        exempt = self._state.exempt
        if exempt and (called := fmt.call_key(call.name, call.arguments)) in exempt:
            exempt.discard(called)
            return None
        total = self.schedule.max_per_episode
        if cooling or (total is not None and self._total >= total):
            return None
        rates = self._rates()
        if not any(rate > 0 for rate in rates):  # a uniform number in [0, 1) is below none of them
            return None
        rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))
        draws = [rng.random() for _ in rates]
        drawn = [kind for (kind, entry, p), u, rate in zip(self._entries, draws, rates)
                 if u < rate and self._eligible(kind, entry, p, call, turn)]
        return drawn[rng.randrange(len(drawn))] if drawn else None

    def _rates(self) -> list[float]:
        """Each schedule entry's rate at :attr:`progress` (read once per progress)."""
        if self._rates_at != self.progress:
            self._rates_now = [entry.rate.at(self.progress) for _, entry, _ in self._entries]
            self._rates_at = self.progress
        return self._rates_now

    def _eligible(self, kind: PerturbationType, entry: Any, p: Perturbation, call: ToolCall, turn: int) -> bool:
        if not entry.targets(call.name, self.env_id, turn):
            return False
        if entry.max_per_episode is not None and self._counts.get(kind.value, 0) >= entry.max_per_episode:
            return False
        if not (p.recoverable or self.schedule.allow_unrecoverable):
            return False
        return p.fits(call, PerturbContext(call=call, turn=turn, tool_schema=self._schemas.get(call.name),
                                           env_id=self.env_id, state=self._state))


def compliance_rates(trajs: Iterable[Trajectory | Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Control-mode compliance per perturbation type, from trajectories' ``info["perturbations"]``.

    Args:
        trajs: :class:`~simrl.types.Trajectory` objects or their JSON dicts (a JSONL line each).

    Returns:
        type -> ``{"attempts", "complied_first_try", "complied_after_retry", "fell_back", "rate"}``
        (counts, and ``rate`` = complied / attempts), types in alphabetical order. Only controlled
        perturbations that were applied count (records with ``complied``); inject-mode records and
        controlled calls that could be neither complied with nor injected are not in trajectories.
    """
    counts: dict[str, dict[str, float]] = {}
    for traj in trajs:
        info = traj.info if isinstance(traj, Trajectory) else traj.get("info") or {}
        for rec in info.get("perturbations") or []:
            if "complied" not in rec:
                continue
            row = counts.setdefault(rec["type"], dict.fromkeys(OUTCOMES[:4], 0))
            row["attempts"] += 1
            outcome = ("complied_after_retry" if rec.get("retries") else "complied_first_try") \
                if rec["complied"] else "fell_back"
            row[outcome] += 1
    for row in counts.values():
        row["rate"] = (row["complied_first_try"] + row["complied_after_retry"]) / row["attempts"]
    return dict(sorted(counts.items()))
