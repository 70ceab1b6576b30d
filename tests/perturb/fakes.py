"""A small in-memory environment for the wrapper's tests: a paged list tool, a write tool, a search tool."""

from __future__ import annotations

import json
from typing import Any

from simrl.envs.base import Environment
from simrl.perturb import render
from simrl.types import Action, Observation, Step, ToolCall, ToolResult

TOOLS = [
    {"type": "function", "function": {"name": "list_things", "description": "A page of things.", "parameters": {
        "type": "object", "properties": {"cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                                         "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}}},
    {"type": "function", "function": {"name": "write_thing", "description": "Store a thing.", "parameters": {
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}},
    {"type": "function", "function": {"name": "web_search", "description": "Search.", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"},
                                         "queries": {"type": "array", "items": {"type": "string"}}}}}},
]
THINGS = [{"id": f"thing:{i:03d}", "name": f"Thing {i}"} for i in range(6)]


def search_text(query: str, n: int = 5) -> str:
    """A ``web_search`` result in the search environment's layout."""
    lines = [f"A search for '{query}' found {n} results:"]
    for k in range(1, n + 1):
        lines += ["", f"[{k}] https://www.x.example/p{k}", f"Title: Page {k}", f"Snippet: about {query} {k}",
                  "Date: N/A"]
    return "\n".join(lines)


class FakeEnv(Environment):
    """Tools ``list_things`` (6 records, pages of ``limit``), ``write_thing`` (records writes in
    ``written``) and ``web_search``; ``executed`` lists every call that reached it."""

    env_id = "fake"

    def __init__(self) -> None:
        self.executed: list[ToolCall] = []
        self.written: list[str] = []
        self.closed = 0

    async def reset(self, task: Any, seed: int = 0) -> Observation:
        return Observation(text="do things", tools=TOOLS)

    def _run(self, call: ToolCall) -> ToolResult:
        self.executed.append(call)
        if call.name == "write_thing":
            self.written.append(call.arguments["name"])
            return ToolResult(name=call.name, content=json.dumps({"id": "thing:new", "name": call.arguments["name"]}))
        if call.name == "web_search":
            return ToolResult(name=call.name, content=search_text(call.arguments.get("query", "")))
        start = int(call.arguments.get("cursor") or 0)
        limit = call.arguments.get("limit") or 4
        more = start + limit < len(THINGS)
        page = {"records": THINGS[start:start + limit], "next_cursor": str(start + limit) if more else None,
                "total": len(THINGS)}
        return ToolResult(name=call.name, content=json.dumps(page))

    async def step(self, action: Action) -> Step:
        if action.is_final:
            return Step(observation=Observation(text="done"), reward=1.0, terminated=True, info={"success": True})
        results = [self._run(c) for c in action.tool_calls]
        return Step(observation=Observation(text=render("fake", results), results=results), info={"inner": 1})

    async def close(self) -> None:
        self.closed += 1


class ControlFake(FakeEnv):
    """A stand-in world-model environment: takes control instructions; ``obey`` says whether it follows them."""

    def __init__(self, obey: bool) -> None:
        super().__init__()
        self.obey, self.instructions, self._pending = obey, [], {}

    controllable = True

    def set_control(self, instructions: dict[int, str], **_: Any) -> None:  # checks / retries ignored
        self._pending = dict(instructions)
        self.instructions.append(dict(instructions))

    def _run(self, call: ToolCall) -> ToolResult:
        index = len(self.executed) - self._offset
        if self.obey and index in self._pending and "429" in self._pending[index]:
            self.executed.append(call)
            return ToolResult(name=call.name, content="429 Too Many Requests: slow down (Retry-After: 3)",
                              is_error=True)
        return super()._run(call)

    async def step(self, action: Action) -> Step:
        self._offset = len(self.executed)
        return await super().step(action)


class Caller:
    """A policy that makes the given calls in order (one per turn), then answers."""

    def __init__(self, calls: list[ToolCall]) -> None:
        self.calls = calls

    async def act(self, task_view, initial, turns) -> Action:
        if len(turns) < len(self.calls):
            return Action(tool_calls=[self.calls[len(turns)]])
        return Action.final("done")


def fake_task(task_id: str = "fake-0"):
    """A minimal task for the fake environment."""
    from simrl.world.schema import Evidence, QAGold, Task

    return Task(task_id=task_id, type="qa", split="dev", prompt="do things", gold=QAGold(answer="x"),
                evidence=Evidence(), hops=1, difficulty="easy", template="fake")
