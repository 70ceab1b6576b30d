"""Real transitions: what a world model must predict, read from simrl trajectories or AgentWorldBench JSONL.

A :class:`Transition` is one real tool call of an episode with everything a world model sees when
it predicts that call's observation (system prompt with the tools, the episode's earlier actions and
real observations, the action) and the real observation, the gold. Its :meth:`Transition.messages`
is the chat of :func:`simrl.wm.prompts.build_messages` (docs/design.md §4 layout).

Sources (:func:`load_transitions` tells them apart line by line, by their fields):

* **simrl trajectory JSONL** (``simrl rollout``; one :class:`~simrl.types.Trajectory` per line):
  **one transition per tool call**, as :class:`~simrl.wm.env.WorldModelEnv` predicts them (a turn
  of three calls gives three transitions, numbered ``### Turn 1..3`` of the episode; the second's
  history holds the first). The observation is that call's ``ToolResult.content``, not the step's
  rendered multi-call text. Final answers are not transitions; a step that was an environment
  failure (``info["env_failure"]``) or did not run its calls is skipped; trajectories whose
  observations came from a world model (``backend`` other than ``real``) are skipped. A call that a
  perturbation schedule changed in code keeps its observation (it is what the agent saw) and names
  the type in :attr:`Transition.perturbation`.
* **AgentWorldBench JSONL** (QwenLM/Qwen-AgentWorld README "Data Format" and ``eval/eval.py``): one
  row per evaluated turn with ``task`` (the domain; ``a/b/mcp`` means ``mcp``; absent means ``mcp``,
  as ``eval.py`` reads it), ``id``, ``system_str``, ``prompt`` (every turn's action message),
  ``response`` (every turn's ``**Environment Observation:**`` message), ``current_prompt``,
  ``turn_idx`` (1-based) and ``total_turns``. There is no separate gold field: the gold observation
  is ``response[turn_idx - 1]`` without its ``**Environment Observation:**`` marker (``eval.py``
  ``build_judge_messages`` / ``clean_response_marker``). :func:`write_agentworldbench` writes this
  layout plus a ``simrl`` object (env id, task id, episode key, tools, error flag) that the reader
  uses when present, so simrl -> AgentWorldBench -> transitions keeps everything. The reader and
  writer live in :mod:`simrl.wm.agentworldbench`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simrl.envs.base import find_spec
from simrl.envs.registry import adapter_for
from simrl.errors import SimrlError
from simrl.rollout import jsonl_objects
from simrl.types import ToolCall, Trajectory
from simrl.wm import prompts

_ACTION_JSON = re.compile(r"```(?:json)?\s*\n(.*?)\n?```", re.DOTALL)


class HistoryTurn(BaseModel):
    """One earlier turn of the episode: the action message, the real observation, the parsed call."""

    model_config = ConfigDict(frozen=True)

    action_text: str = Field(description="The action as the world model's user message (### Turn N ...).")
    observation: str = Field(description="The real observation (raw, without the observation marker).")
    name: str | None = Field(default=None, description="Parsed tool name (None if the action is unparseable).")
    arguments: dict[str, Any] | None = Field(default=None, description="Parsed tool arguments.")


class Transition(BaseModel):
    """One real step: the world model's input for it and the real observation (the gold)."""

    model_config = ConfigDict(frozen=True)

    domain: str = Field(description="search | mcp | bfcl | an AgentWorldBench domain (lowercase).")
    env_id: str | None = Field(default=None, description="simrl environment id (from a simrl trajectory).")
    task_id: str | None = None
    trajectory: str = Field(description="Key grouping the transitions of one episode, e.g. 'file.jsonl:3'.")
    turn_idx: int = Field(ge=0, description="0-based index of this action in its episode.")
    total_turns: int = Field(ge=1, description="Transitions in the episode.")
    system: str = Field(description="The world model's system prompt (tools included).")
    tools: list[dict[str, Any]] = Field(default_factory=list, description="Tool schemas (OpenAI function format).")
    history: list[HistoryTurn] = Field(default_factory=list)
    action_text: str = Field(description="The current action as the last user message.")
    action_name: str | None = None
    action_arguments: dict[str, Any] | None = None
    observation: str = Field(description="The REAL observation (gold).")
    real_is_error: bool | None = Field(default=None, description="The real result was an error (None: unknown).")
    perturbation: str | None = Field(default=None, description="Perturbation type a schedule applied to this "
                                                               "call in the recorded episode (None: none).")

    def messages(self, control: str | None = None) -> list[dict[str, str]]:
        """The chat for predicting this step: ``2 * len(history) + 2`` messages, the action last.

        Same layout as :func:`simrl.wm.prompts.build_messages`; ``control`` is appended to the last
        user message as a ``**Control Instruction:**`` block.
        """
        messages = [{"role": "system", "content": self.system}]
        for turn in self.history:
            messages.append({"role": "user", "content": turn.action_text})
            messages.append({"role": "assistant", "content": prompts.observation_message(turn.observation)})
        last = self.action_text + (f"\n\n{prompts.CONTROL_HEADER}\n{control.strip()}" if control else "")
        messages.append({"role": "user", "content": last})
        return messages

    def call(self) -> ToolCall | None:
        """The action as a :class:`~simrl.types.ToolCall` (None when it could not be parsed)."""
        if self.action_name is None:
            return None
        return ToolCall(name=self.action_name, arguments=dict(self.action_arguments or {}))


def parse_action(text: str) -> tuple[str | None, dict[str, Any] | None]:
    """``(name, arguments)`` of the last fenced JSON tool call in an action message, else ``(None, None)``.

    >>> parse_action(prompts.action_message(2, "get_record", {"id": "person:000001"}))
    ('get_record', {'id': 'person:000001'})
    """
    for block in reversed(_ACTION_JSON.findall(text or "")):
        try:
            obj = json.loads(block)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("name"), str):
            args = obj.get("arguments", {})
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except ValueError:
                    continue
            return obj["name"], args if isinstance(args, dict) else None
    return None, None


def called_tools_system(tr: Transition, world: Path | None) -> str:
    """``tr``'s system prompt rebuilt with only the tools its episode has called so far (this call included).

    Transitions without tool schemas (AgentWorldBench rows) keep their system prompt; the task's instruction is
    added from ``world``'s ground truth when ``tr``'s environment has one (:func:`simrl.wm.env_truth.oracle_envs`).
    """
    from simrl.wm.env_truth import oracle_envs

    if not tr.tools:
        return tr.system
    called = {h.name for h in tr.history} | {tr.action_name}
    tools = [t for t in tr.tools if (t.get("function") or {}).get("name") in called]
    instruction = None
    if world is not None and tr.env_id in oracle_envs():
        from simrl.wm.oracle import instructions_of

        instruction = instructions_of(world).get(tr.task_id or "")
    return prompts.system_prompt(tr.domain, tools, instruction)


def load_transitions(path: str | Path, *, world: Path | None = None, domain: str | None = None,
                     skipped: Counter | None = None) -> list[Transition]:
    """Read the transitions of a simrl trajectory JSONL or an AgentWorldBench JSONL file (told apart per line).

    Args:
        path: the file; a folder reads every ``*.jsonl`` in it (an AgentWorldBench download).
        world: the world the trajectories were recorded in: its tasks' simulation instructions
            (:func:`simrl.wm.oracle.instructions_of`) go into the system prompt, as
            :class:`~simrl.wm.env.WorldModelEnv` shows them. Ignored for bfcl and AgentWorldBench rows.
        domain: force this domain (default: from the env id, or AgentWorldBench's ``task``).
        skipped: if given, counts what was skipped, by reason.

    Raises:
        SimrlError: unreadable file, a line that is not JSON or not a row of either format (the
            message names the file and line), a task missing from ``world``. A torn line (a record
            cut short by a killed writer) is skipped and counted in ``skipped`` with its line number.
    """
    p = Path(path)
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    if not files:
        raise SimrlError(f"no *.jsonl files in {p}: pass a trajectories file or an AgentWorldBench folder")
    from simrl.wm.agentworldbench import from_row

    skipped = skipped if skipped is not None else Counter()
    out: list[Transition] = []
    listed: dict[str, list[dict[str, Any]]] = {}  # the world-model environment's tool lists, read once
    for file in files:
        for lineno, row in _rows(file, skipped):
            if _is_trajectory(row):
                traj = _trajectory(file, lineno, row)
                out += _from_trajectory(traj, f"{file.name}:{lineno}", world, domain, skipped, listed)
            else:
                key = f"{file.name}:{row['id'] if 'id' in row else lineno}"
                out.append(from_row(row, f"{file}:{lineno}", key, domain))
    return out


def _is_trajectory(row: dict[str, Any]) -> bool:
    return {"initial", "env_id", "task_id"} <= row.keys()


def _rows(file: Path, skipped: Counter) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON objects of ``file`` with their line numbers. A torn line (a record cut short by a killed
    writer: starts like an object, is not valid JSON) is skipped and counted in ``skipped`` with its
    line number; any other line that is not JSON is an error."""
    for lineno, row in jsonl_objects(file, skipped, torn="torn line (a record cut short)",
                                     expected="one JSON object per line"):
        if not isinstance(row, dict):
            raise SimrlError(f"{file}:{lineno}: expected a JSON object, got {type(row).__name__}")
        if not (_is_trajectory(row) or "system_str" in row or "prompt" in row):
            raise SimrlError(f"{file}:{lineno}: neither a simrl trajectory (task_id, env_id, initial, turns; "
                             "from `simrl rollout`) nor an AgentWorldBench row (system_str, prompt, response, "
                             "turn_idx)")
        yield lineno, row


def _trajectory(file: Path, lineno: int, row: dict[str, Any]) -> Trajectory:
    try:
        return Trajectory.model_validate(row)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        raise SimrlError(f"{file}:{lineno}: not a simrl trajectory: {where}: {e['msg']}") from None


def _from_trajectory(traj: Trajectory, key: str, world: Path | None, domain: str | None,
                     skipped: Counter, listed: dict[str, list[dict[str, Any]]]) -> list[Transition]:
    if traj.backend != "real":
        skipped[f"trajectory from backend {traj.backend} (not real observations)"] += 1
        return []
    dom = domain or adapter_for(traj.env_id).domain
    found = find_spec(traj.env_id)
    lister = found.wm_adapter.tool_list if found is not None and found.wm_adapter is not None else None
    in_world = lister is not None and found.needs_world  # type: ignore[union-attr]
    instruction = None
    if world is not None and in_world:
        from simrl.wm.oracle import instructions_of

        instruction = instructions_of(world).get(traj.task_id)
        if instruction is None:
            raise SimrlError(f"{key}: task {traj.task_id!r} is not in world {world}; pass the world the "
                             "trajectories were recorded in (--world), or none")
    tools = _episode_tools(traj)
    if world is not None and in_world:
        tools = _as_listed(tools, world, listed, lister)
    system = prompts.system_prompt(dom, tools, instruction)
    steps: list[dict[str, Any]] = []
    for turn in traj.turns:
        calls, step = turn.action.tool_calls, turn.step
        if turn.action.is_final or not calls:
            continue
        if step.info.get("env_failure") or len(step.observation.results) != len(calls):
            skipped["environment failure or calls not run"] += 1
            continue
        recorded = [r for r in step.info.get("perturbations", []) if isinstance(r, dict)]  # PerturbedEnv's
        for call, result in zip(calls, step.observation.results):
            record = next((r for r in recorded if r.get("tool") == call.name), None)
            if record is not None:
                recorded.remove(record)
            steps.append({"name": call.name, "arguments": dict(call.arguments), "observation": result.content,
                          "is_error": result.is_error, "perturbation": record and record.get("type")})
    out, history = [], []
    for i, s in enumerate(steps):
        text = prompts.action_message(i + 1, s["name"], s["arguments"])
        out.append(Transition(domain=dom, env_id=traj.env_id, task_id=traj.task_id, trajectory=key, turn_idx=i,
                              total_turns=len(steps), system=system, tools=tools, history=list(history),
                              action_text=text, action_name=s["name"], action_arguments=s["arguments"],
                              observation=s["observation"], real_is_error=s["is_error"],
                              perturbation=s["perturbation"]))
        history.append(HistoryTurn(action_text=text, observation=s["observation"], name=s["name"],
                                   arguments=s["arguments"]))
    return out


def _episode_tools(traj: Trajectory) -> list[dict[str, Any]]:
    """The reset's tools plus any a later step added (BFCL adds tools between user turns), by name."""
    tools, names = [], set()
    for tool in [*traj.initial.tools, *(t for turn in traj.turns for t in turn.step.observation.tools)]:
        name = tool.get("function", {}).get("name") if isinstance(tool, dict) else None
        if name not in names:
            names.add(name)
            tools.append(tool)
    return tools


def _as_listed(tools: list[dict[str, Any]], world: Path, listed: dict[str, list[dict[str, Any]]],
               lister: Any) -> list[dict[str, Any]]:
    """``tools`` as :class:`~simrl.wm.env.WorldModelEnv` lists them (the environment adapter's ``tool_list``:
    for ``mcp-world`` the record server's own listing), when they are the same tools.

    A client receives the schemas with another key order than the in-process listing the world-model
    environment shows its model, and the system prompt prints them as JSON: without this, training
    data and evaluation prompts would differ from the prompts at inference. Tools that differ (the
    world changed since the recording) stay as recorded.
    """
    key = f"{getattr(lister, '__qualname__', lister)}:{Path(world).resolve()}"
    if key not in listed:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:  # works with or without a running event loop
            listed[key] = pool.submit(asyncio.run, lister(Path(world), [], (None, None))).result()
    return listed[key] if listed[key] == tools else tools


def write_agentworldbench(transitions: Iterable[Transition], path: str | Path) -> int:
    """Write AgentWorldBench-format JSONL, one row per transition; returns the number of rows.

    See :func:`simrl.wm.agentworldbench.write_rows` (the layout and the ``simrl`` metadata object).
    """
    from simrl.wm.agentworldbench import write_rows

    return write_rows(transitions, path)

