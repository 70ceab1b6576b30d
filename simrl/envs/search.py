"""Search over a world's corpus: a bm25s index, the ``web_search`` / ``web_extractor`` tools, and
:class:`SearchEnv`.

The pieces live in sibling modules and are re-exported here: tokens and snippets in
:mod:`simrl.envs.search_text`, the bm25s index in :mod:`simrl.envs.search_index`, and the tools
(Qwen-AgentWorld's ``web_search`` / ``web_extractor`` layout) in :mod:`simrl.envs.search_tools`.
This module holds the environment and registers it as ``search``.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from simrl.envs import truth
from simrl.envs.base import Environment
from simrl.envs.prompts import SEARCH_PROMPT
from simrl.envs.registry import EnvSpec, WorldModelAdapter, register, render_contents
from simrl.envs.search_index import CACHE_FORMAT, SearchHit, SearchIndex
from simrl.envs.search_noise import episode_seed, fault, mixer
from simrl.envs.search_text import plain_text, snippet, tokenize
from simrl.envs.search_tools import (
    MAX_QUERIES,
    RESULTS_PER_QUERY,
    SEARCH_TOOLS,
    TOOLS,
    call_tool,
    format_results,
    run_tool,
    web_extractor,
    web_search,
)
from simrl.errors import SimrlError
from simrl.reward.task import score_final
from simrl.types import Action, Observation, Step, ToolCall, ToolResult
from simrl.world.io import load_manifest
from simrl.world.schema import Task

__all__ = ["CACHE_FORMAT", "MAX_QUERIES", "RESULTS_PER_QUERY", "SEARCH_TOOLS", "TOOLS", "SearchEnv", "SearchHit",
           "SearchIndex", "call_tool", "format_results", "plain_text", "run_tool", "snippet", "tokenize",
           "web_extractor", "web_search"]



_OPENING = threading.Lock()


def _open_index(world: Path) -> SearchIndex:
    """:meth:`SearchIndex.open`, one at a time in this process: concurrent episodes (``asyncio.to_thread``) of a
    world whose index is not cached yet would otherwise build it and replace each other's cache folder while the
    other reads it."""
    with _OPENING:
        return SearchIndex.open(world)

class SearchEnv(Environment):
    """Answer a world's ``qa`` / ``table`` tasks by searching its corpus (``env_id = "search"``).

    ``reset(task)`` shows only the task prompt (its :meth:`~simrl.world.schema.Task.policy_view`)
    and :data:`SEARCH_TOOLS`; ``step`` runs tool calls (one :class:`ToolResult` each, errors as
    ``is_error`` results) or scores a final answer with :func:`simrl.reward.task.score_answer`
    (``terminated``, reward in [0, 1]). The turn limit (the spec's ``max_turns``, 20) and the order of
    calls are :func:`~simrl.envs.base.make`'s wrappers.

    Args:
        world: the world folder whose corpus is searched.
        index: a shared, already opened :class:`SearchIndex` (else opened on first reset, cached).
        noise_rate: probability that a result slot holds an irrelevant page, in [0, 1]; fault_rate: probability
            that a tool call fails (504 / 429 / 503), in [0, 1] (:mod:`simrl.envs.search_noise`; both 0: the
            clean engine, identical to the oracle's observations).
        seed: mixed into every episode's draws (``seed * 1000003 + episode seed``).

    Raises:
        SimrlError: ``world`` is not a world folder; a rate outside [0, 1].
    """

    env_id = "search"

    def __init__(self, world: str | Path, index: SearchIndex | None = None,
                 noise_rate: float = 0.0, fault_rate: float = 0.0, seed: int = 0) -> None:
        self.world = Path(world)
        load_manifest(self.world)
        for name, rate in (("noise_rate", noise_rate), ("fault_rate", fault_rate)):
            if not 0.0 <= rate <= 1.0:
                raise SimrlError(f"search: {name} must be in [0, 1], got {rate}")
        self.noise_rate, self.fault_rate, self.seed = noise_rate, fault_rate, seed
        self._draws, self._calls = 0, 0
        self._index, self._own_index = index, index is None
        self._task: Task | None = None
        self._closed = False

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Start an episode on a ``qa`` or ``table`` task; returns its prompt and the tool schemas.

        Raises:
            SimrlError: a ``records`` task (its data is in the record server: use env ``mcp-world``).
        """
        if task.type == "records":
            raise SimrlError(f"task {task.task_id} is a records task: its data lives in the world's record "
                             "server, not the corpus; run it with env `mcp-world`")
        if self._index is None:
            self._index = await asyncio.to_thread(_open_index, self.world)
        self._task = task
        self._draws, self._calls = episode_seed(self.seed, seed), 0
        return Observation(text=task.policy_view()["prompt"], tools=SEARCH_TOOLS)

    async def step(self, action: Action) -> Step:
        """Apply ``action``: run its tool calls, or score its final answer (which ends the episode)."""
        assert self._task is not None, "step before reset (make() wraps it in OrderEnforcing)"
        if action.is_final:
            reward, info = score_final(self._task, action.answer or "")
            return Step(observation=Observation(text="Answer received."), reward=reward, terminated=True, info=info)
        if action.tool_calls:
            results = await asyncio.to_thread(lambda: [self._call(c) for c in action.tool_calls])
            text = render_contents(results)
        else:
            results, text = [], "Error: the action has neither tool calls nor an answer"
        return Step(observation=Observation(text=text, results=results))

    def _call(self, call: ToolCall) -> ToolResult:
        """One tool call: its fault when one is drawn, else the engine's result (search hits mixed with noise)."""
        i, self._calls = self._calls, self._calls + 1
        failed = fault(call, self.fault_rate, self._draws, i)
        if failed is not None:
            return failed
        mix = mixer(self._index, self.noise_rate, self._draws, i) if self.noise_rate > 0 else None
        return call_tool(self._index, call, mix)

    async def close(self) -> None:
        """End the environment; closes the index it opened itself (a second call does nothing)."""
        if not self._closed and self._own_index and self._index is not None:
            self._index.close()
        self._closed = True


def _unknown_tool(name: str, known: list[str]) -> str:
    return f"Error: unknown tool {name!r}; available: {', '.join(known)}"


def _invalid_arguments(name: str, reason: str) -> str:
    return f"Error: {reason}"


register(EnvSpec(
    id="search", factory=SearchEnv, description="Search over a world's corpus (web_search, web_extractor; bm25s)",
    task_types=("qa", "table"), tools=tuple(SEARCH_TOOLS), render=render_contents, needs_world=True,
    options=frozenset({"noise_rate", "fault_rate", "seed"}), max_turns=20,
    wm_adapter=WorldModelAdapter(tool_list=truth.search_tool_list, domain="search", truth=truth.search_truth,
                                 prompt=SEARCH_PROMPT, free_text=False,
                                 unknown_tool=_unknown_tool, invalid_arguments=_invalid_arguments),
    expert="simrl.policies.expert:search_expert"))
