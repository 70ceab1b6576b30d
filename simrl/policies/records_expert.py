"""Scripted expert for ``records`` tasks: solves them through the world record server's MCP tools.

Each task template has a short script written as a generator: it yields tool calls, receives each
observation's text, and returns the final answer. Read answers are computed from what the tools
returned (paging through every result page); writes use the record tools. Operational errors
(429, 503, 504) are retried, as an agent should. Like :class:`~simrl.policies.expert.SearchExpert`,
the expert knows which entities a task is about (from the world) but not the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from pathlib import Path

from simrl.types import Action, Observation, Turn
from simrl.world import WorldIndex, load_graph
from simrl.world.schema import Task

Script = Generator[Action, str, str]
_RETRYABLE = ("429", "503", "504", "timed out", "Timeout")


class RecordsExpert:
    """The scripted expert policy for the ``mcp-world`` environment.

    Args:
        world: the world folder (entity names are read from its graph).
        tasks: the world's tasks (the expert finds each episode's task by id).
    """

    def __init__(self, world: str | Path, tasks: list[Task]) -> None:
        self.ix = WorldIndex(load_graph(world))
        self.tasks = {t.task_id: t for t in tasks}
        self._scripts: dict[str, Script] = {}

    async def act(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Action:
        """Next tool call of the task's script, or the final answer when the script ends."""
        task_id = task_view["task_id"]
        try:
            if not turns or task_id not in self._scripts:
                self._scripts[task_id] = self._script(self.tasks[task_id])
                return next(self._scripts[task_id])
            last = turns[-1].step.observation
            if last.results and last.results[0].is_error and any(m in last.results[0].content for m in _RETRYABLE):
                return turns[-1].action  # an operational fault: retry the same call
            return self._scripts[task_id].send(last.results[0].content if last.results else last.text)
        except StopIteration as done:
            self._scripts.pop(task_id, None)
            return Action.final(f"<answer>{done.value}</answer>")
        except (ValueError, KeyError, StopIteration, IndexError) as err:  # an unexpected tool result
            self._scripts.pop(task_id, None)
            return Action.final(f"<answer>failed: {type(err).__name__}</answer>")

    def _script(self, task: Task) -> Script:
        return getattr(self, f"_{task.template}")(task)

    # -- building blocks -------------------------------------------------------------------------
    def _find(self, nid: str) -> Script:
        name, kind = self.ix.name(nid), self.ix.node(nid)["type"]
        text = yield Action.call("find_by_name", name=name, type=kind)
        records = json.loads(text)["records"]
        return next(r["id"] for r in records if r["name"] == name)

    def _all_pages(self, tool: str, **args) -> Script:
        records, cursor = [], None
        while True:
            text = yield Action.call(tool, **args, **({"cursor": cursor} if cursor else {}))
            page = json.loads(text)
            records += page["records"]
            cursor = page.get("next_cursor")
            if not cursor:
                return records

    # -- one script per template -----------------------------------------------------------------
    def _count_members(self, task: Task) -> Script:
        org = yield from self._find(task.evidence.entity_ids[0])
        members = yield from self._all_pages("list_members", org_id=org)
        return str(len(members))

    def _total_employees_in_city(self, task: Task) -> Script:
        city = yield from self._find(task.evidence.entity_ids[0])
        orgs = yield from self._all_pages("search_records", type="organization", filters={"headquartered_in": city})
        return str(sum(int(o["employees"]) for o in orgs))

    def _first_product(self, task: Task) -> Script:
        org = yield from self._find(task.evidence.entity_ids[0])
        products = yield from self._all_pages("list_products", org_id=org)
        return min(products, key=lambda p: p["released"])["name"]

    def _move_headquarters(self, task: Task) -> Script:
        org = yield from self._find(task.evidence.entity_ids[0])
        city = yield from self._find(task.evidence.entity_ids[1])
        yield Action.call("update_record", id=org, fields={"headquartered_in": city})
        return "done"

    def _set_employees(self, task: Task) -> Script:
        org = yield from self._find(task.evidence.entity_ids[0])
        yield Action.call("update_record", id=org, fields={"employees": int(re.search(r" now has (\d+)", task.prompt).group(1))})
        return "done"

    def _add_member(self, task: Task) -> Script:
        person = yield from self._find(task.evidence.entity_ids[0])
        org = yield from self._find(task.evidence.entity_ids[1])
        start = re.search(r"\d{4}-\d{2}-\d{2}", task.prompt).group(0)
        yield Action.call("add_membership", person_id=person, org_id=org, start=start)
        return "done"
