"""Scripted expert for ``records`` tasks: solves them through the world record server's MCP tools.

Each task template has a short script written as a generator: it yields tool calls, receives each
observation's text, and returns the final answer. Read answers are computed from what the tools
returned (paging through every result page, continuation cursors included); writes use the record
tools. Disturbed results are recovered from as an agent should (:class:`~simrl.policies.expert.ToolRecovery`:
retries of 429 / 5xx / timeouts, arguments a 422 asks for, a smaller ``limit`` after a truncated
response, a re-query after an empty one), and pages are read tolerantly (``items`` / ``nextCursor``
for ``records`` / ``next_cursor``, extra fields ignored). Like
:class:`~simrl.policies.expert.SearchExpert`, the expert knows which entities a task is about (from
the world) but not the answer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from simrl.policies.expert import Script, ScriptedExpert
from simrl.records.page import CURSOR_KEYS, LIST_KEYS
from simrl.types import Action
from simrl.world import WorldIndex, load_graph
from simrl.world.schema import Task


def read_page(text: str) -> tuple[list[dict[str, Any]], str | None]:
    """``(records, next cursor)`` of a record tool's JSON page, tolerant of renamed fields.

    >>> read_page('{"items": [{"id": "city:000001"}], "nextCursor": null, "_meta": {}}')
    ([{'id': 'city:000001'}], None)

    Raises:
        ValueError: not JSON, or no list of records.
    """
    page = json.loads(text)
    records = next((page[k] for k in LIST_KEYS if isinstance(page.get(k), list)), None)
    if records is None:
        raise ValueError(f"no records in the result: {text[:80]!r}")
    cursor = next((page[k] for k in CURSOR_KEYS if k in page), None)
    return records, cursor


class RecordsExpert(ScriptedExpert):
    """The scripted expert policy for the ``mcp-world`` environment.

    Args:
        world: the world folder (entity names are read from its graph).
        tasks: the world's tasks (the expert finds each episode's task by id).
    """

    def __init__(self, world: str | Path, tasks: list[Task]) -> None:
        super().__init__(tasks)
        self.ix = WorldIndex(load_graph(world))

    def _script(self, task: Task) -> Script:
        """The template's script, its value wrapped as ``<answer>...</answer>``."""
        value = yield from getattr(self, f"_{task.template}")(task)
        return f"<answer>{value}</answer>"

    # -- building blocks -------------------------------------------------------------------------
    def _find(self, nid: str) -> Script:
        name, kind = self.ix.name(nid), self.ix.node(nid)["type"]
        records, _ = read_page((yield Action.call("find_by_name", name=name, type=kind)))
        return next(r["id"] for r in records if r["name"] == name and r.get("type", kind) == kind)

    def _all_pages(self, tool: str, **args) -> Script:
        records, cursor = [], None
        while True:
            page, cursor = read_page((yield Action.call(tool, **args, **({"cursor": cursor} if cursor else {}))))
            records += page
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
