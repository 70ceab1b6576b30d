"""Scripted expert for search tasks: solves ``qa`` and ``table`` tasks through the real search tools.

The expert is privileged in *what it looks for* (it reads the task's evidence path from the world) but
not in *what it knows*: it answers only with facts the tools actually returned. It searches each
entity on the evidence path (and each news-only fact by the news title's words), opens the matching
page with ``web_extractor``, and gives the gold answer only if that answer appeared in a page it read;
otherwise it answers that it could not find it. A task the expert cannot solve is therefore a bug in
the task or the tools. Its trajectories double as demonstrations for the warm start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from simrl.types import Action, Observation, Turn
from simrl.world.corpus import long_date
from simrl.world.index import WorldIndex
from simrl.world.schema import QAGold, TableGold, Task

_RESULT = re.compile(r"^\[(\d+)\]\s+(\S+)\s*$")
_TITLE = re.compile(r"^Title:\s*(.*)$")
_LINK = re.compile(r"\[([^\]]+)\]\((https://[^)]+)\)")
_LIST_TITLES = {"organizations_in_city": "Organizations headquartered in {}",
                "people_born_in_city": "People born in {}", "cities_of_country": "Cities of {}",
                "products_of_organization": "Products of {}"}


def parse_search_results(text: str) -> list[tuple[str, str]]:
    """``(url, title)`` pairs from a ``web_search`` observation (``[k] URL`` / ``Title: ...`` layout)."""
    out: list[tuple[str, str]] = []
    url = None
    for line in text.splitlines():
        line = line.strip()
        m = _RESULT.match(line)
        if m:
            url = m.group(2)
            continue
        t = _TITLE.match(line)
        if t and url:
            out.append((url, t.group(1).strip()))
            url = None
    return out


@dataclass
class _Plan:
    """What to look up: search queries, each with the page title that answers it."""

    lookups: list[tuple[str, str]]
    seen: list[str] = field(default_factory=list)


class SearchExpert:
    """The scripted expert policy for the ``search`` environment (``qa`` and ``table`` tasks).

    Args:
        ix: the world's index (to read evidence names).
        tasks: the world's tasks (the expert finds each episode's task by id).
    """

    def __init__(self, ix: WorldIndex, tasks: list[Task]) -> None:
        self.ix = ix
        self.tasks = {t.task_id: t for t in tasks}
        self._plans: dict[str, _Plan] = {}

    def _plan(self, task: Task) -> _Plan:
        name = self.ix.name
        lookups = [(name(n), name(n)) for n in task.evidence.entity_ids[:1]]
        for edge in task.evidence.edge_ids:
            u, v, d = self.ix.edges[edge]
            if d["relation"] == "acquired":
                title = f"{name(u)} acquires {name(v)}"
            elif d["relation"] == "ceo_of":
                title = f"{name(u)} named chief executive of {name(v)}"
            else:
                title = name(v) if v not in task.evidence.entity_ids[:1] else name(u)
            lookups.append((title, title))
        if task.type == "table" and task.template in _LIST_TITLES:
            title = _LIST_TITLES[task.template].format(name(task.evidence.entity_ids[0]))
            lookups = [(title, title)]
        return _Plan(lookups=list(dict.fromkeys(lookups)))

    async def act(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Action:
        """Next action: alternate ``web_search`` / ``web_extractor`` over the plan, then answer."""
        task = self.tasks[task_view["task_id"]]
        plan = self._plans.setdefault(task.task_id, self._plan(task))
        if turns and turns[-1].action.tool_calls and turns[-1].action.tool_calls[0].name == "web_extractor":
            plan.seen.append(turns[-1].step.observation.text)
        if task.type == "table" and task.template in _LIST_TITLES and len(plan.lookups) == 1 and plan.seen:
            links = [(t, u) for t, u in _LINK.findall(plan.seen[0])]
            plan.lookups += [(t, t) for t, _ in links[1:]]  # the first link is the list's owner
        k = len(turns)
        idx = k // 2
        if idx < len(plan.lookups):
            query, title = plan.lookups[idx]
            if k % 2 == 0:
                return Action.call("web_search", query=query)
            results = parse_search_results(turns[-1].step.observation.text)
            url = next((u for u, t in results if t == title), results[0][0] if results else None)
            if url is not None:
                return Action.call("web_extractor", url=url)
            return Action.call("web_search", query=f"{query} page")
        self._plans.pop(task.task_id, None)
        return Action.final(self._answer(task, "\n".join(plan.seen)))

    def _answer(self, task: Task, read: str) -> str:
        gold = task.gold
        if isinstance(gold, QAGold):
            forms = [gold.answer, *gold.aliases]
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", gold.answer):
                forms.append(long_date(gold.answer))
            found = any(f in read for f in forms)
            return f"<answer>{gold.answer if found else 'not found'}</answer>"
        assert isinstance(gold, TableGold)
        cols = [c.name for c in gold.columns]
        rows = [r for r in gold.rows if r["name"] in read]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
        return "\n".join(lines)
