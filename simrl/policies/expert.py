"""Scripted experts: a base that runs one script per episode with tool-level recovery, and the
expert for search tasks, which solves ``qa`` and ``table`` tasks through the real search tools.

The expert is privileged in *what it looks for* (it reads the task's evidence path from the world) but
not in *what it knows*: it answers only with facts the tools actually returned. It searches each
entity on the evidence path (and each news-only fact by the news title's words), opens the matching
page with ``web_extractor``, and gives the gold answer only if that answer appeared in a page it read;
otherwise it answers that it could not find it. A task the expert cannot solve is therefore a bug in
the task or the tools. Its trajectories double as demonstrations for the warm start.

Recovery (:class:`ToolRecovery`) is what a careful agent does with a disturbed tool result, read
from the result text alone (the perturbations of :mod:`simrl.perturb` and real faults alike):
retry transient errors (429, 500, 502, 503, 504, timeouts; a retry-after is counted, not slept),
give an argument a 422 asks for, repeat a call whose output was cut short, fetch every ``"page"``
a result points to, re-query once after an empty result, and narrow a request whose response was
truncated for size. Following continuation cursors and parsing renamed fields is up to the scripts.
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simrl.records.page import LIST_KEYS, TOTAL_KEYS
from simrl.types import Action, Observation, ToolResult, Turn
from simrl.world.corpus import long_date
from simrl.world.index import WorldIndex
from simrl.world.schema import QAGold, TableGold, Task

Script = Generator[Action, str, str]
"""A task script: yields tool calls, receives each (recovered) result text, returns the final answer."""

_RESULT = re.compile(r"^\[(\d+)\]\s+<?(\S+?)>?\s*$")
_TITLE = re.compile(r"^(?:Page )?[Tt]itle:\s*(.*)$")
_LINK = re.compile(r"\[([^\]]+)\]\((https://[^)]+)\)")
_LIST_TITLES = {"organizations_in_city": "Organizations headquartered in {}",
                "people_born_in_city": "People born in {}", "cities_of_country": "Cities of {}",
                "products_of_organization": "Products of {}"}
_RETRYABLE = re.compile(r"\b(?:429|500|502|503|504)\b|timed out|timeout", re.IGNORECASE)
_RETRY_AFTER = re.compile(r"retry[- ]after\D{0,8}(\d+(?:\.\d+)?)", re.IGNORECASE)
_MISSING = re.compile(r'argument "(\w+)" is required[^(]*?(?:instead of "(\w+)")?\s*\(\w+, e\.g\. (.*)\)\s*$')
_NEXT_PAGE = re.compile(r'\n?\[(Showing results|Part) [^\]\n]*"page": (\d+)[^\]\n]*\]\s*$')
_REPEAT = re.compile(r"\[\d+ more results not shown|\[output cut short")
_TRUNCATED = "[response truncated at"


def parse_search_results(text: str) -> list[tuple[str, str]]:
    """``(url, title)`` pairs from a ``web_search`` observation (``[k] URL`` / ``Title: ...`` layout;
    tolerant of ``<URL>`` and ``Page title:``)."""
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


def _is_empty(text: str) -> bool:
    """An empty list result: a JSON page without records and a zero total, or "No results found"."""
    if text.startswith("No results found for"):
        return True
    try:
        obj = json.loads(text)
    except ValueError:
        return False
    if not isinstance(obj, dict):
        return False
    items = next((obj[k] for k in LIST_KEYS if isinstance(obj.get(k), list)), None)
    return items == [] and not obj.get(TOTAL_KEYS[0], obj.get(TOTAL_KEYS[1], 0))


@dataclass
class ToolRecovery:
    """Tool-level recovery for one episode: turns a tool result into a follow-up call or a usable text.

    Args:
        tools: the episode's tool schemas (tools with a ``limit`` argument can be narrowed).
        max_attempts: retries / re-queries / narrowings in a row before the result is handed over as is.
    """

    tools: list[dict[str, Any]] = field(default_factory=list)
    max_attempts: int = 8
    attempts: int = 0
    waited_s: float = 0.0
    parts: list[str] = field(default_factory=list)
    requeried: bool = False

    def next(self, action: Action, result: ToolResult) -> Action | str:
        """The call that recovers from ``result``, or the text to hand the script (pages joined)."""
        call = action.tool_calls[0] if action.tool_calls else None
        follow, counted = self._follow_up(action, result) if call is not None else (None, False)
        if follow is not None and (not counted or self.attempts < self.max_attempts):
            self.attempts += counted
            return follow
        text = "".join(self.parts) + result.content
        self.parts, self.attempts, self.requeried = [], 0, False
        return text

    def _follow_up(self, action: Action, result: ToolResult) -> tuple[Action | None, bool]:
        call, text = action.tool_calls[0], result.content
        if result.is_error:
            missing = _MISSING.search(text)
            if missing:
                args = {k: v for k, v in call.arguments.items() if k != missing.group(2)}
                return Action.call(call.name, **args, **{missing.group(1): json.loads(missing.group(3))}), True
            if _RETRYABLE.search(text):
                wait = _RETRY_AFTER.search(text)
                self.waited_s += float(wait.group(1)) if wait else 0.0
                return action, True
            return None, False
        if _TRUNCATED in text:
            return self._narrow(call.name, dict(call.arguments)), True
        page = _NEXT_PAGE.search(text)
        if page:
            self.parts.append(text[:page.start()] + ("\n\n" if page.group(1) == "Showing results" else ""))
            return Action.call(call.name, **(call.arguments | {"page": int(page.group(2))})), False
        if _REPEAT.search(text):
            return action, True
        if _is_empty(text) and not self.requeried:
            self.requeried = True
            return self._rephrase(call.name, dict(call.arguments)), True
        return None, False

    def _narrow(self, tool: str, args: dict[str, Any]) -> Action | None:
        """Ask for less: half the ``limit`` (2 when none was given), or the query as an exact phrase."""
        schema = next((t["function"] for t in self.tools if t.get("function", {}).get("name") == tool), {})
        if "limit" in (schema.get("parameters") or {}).get("properties", {}):
            limit = args.get("limit")
            new = limit // 2 if isinstance(limit, int) else 2
            return Action.call(tool, **(args | {"limit": new})) if new >= 1 else None
        query = args.get("query")
        if isinstance(query, str) and not query.startswith('"'):
            return Action.call(tool, **(args | {"query": f'"{query}"'}))
        return None

    def _rephrase(self, tool: str, args: dict[str, Any]) -> Action:
        """Ask again, changed where it can be: the query as an exact phrase, a name without its type."""
        query = args.get("query")
        if isinstance(query, str) and not query.startswith('"'):
            args["query"] = f'"{query}"'
        elif tool == "find_by_name":
            args.pop("type", None)
        return Action.call(tool, **args)


class ScriptedExpert(abc.ABC):
    """Base of the scripted experts: one :data:`Script` per episode behind a :class:`ToolRecovery`.

    Subclasses implement :meth:`_script`. Episodes are keyed by task id (one episode per task at a
    time). ``retry_wait_s`` sums the retry-after seconds the expert would have waited.

    Args:
        tasks: the world's tasks (the expert finds each episode's task by id).
    """

    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = {t.task_id: t for t in tasks}
        self._scripts: dict[str, Script] = {}
        self._recovery: dict[str, ToolRecovery] = {}
        self.retry_wait_s = 0.0

    @abc.abstractmethod
    def _script(self, task: Task) -> Script:
        """The task's script: yields the expert's actions, receives each result text, returns the final answer."""

    async def act(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Action:
        """Next tool call (a recovery, or the script's next step), or the final answer."""
        task_id = task_view["task_id"]
        try:
            if not turns or task_id not in self._scripts:
                self._end(task_id)
                self._scripts[task_id] = self._script(self.tasks[task_id])
                self._recovery[task_id] = ToolRecovery(initial.tools)
                return next(self._scripts[task_id])
            last = turns[-1]
            obs = last.step.observation
            result = obs.results[0] if obs.results else ToolResult(name="", content=obs.text)
            follow = self._recovery[task_id].next(last.action, result)
            if isinstance(follow, Action):
                return follow
            return self._scripts[task_id].send(follow)
        except StopIteration as done:
            self._end(task_id)
            return Action.final(done.value)
        except (ValueError, KeyError, IndexError, TypeError, RuntimeError) as err:  # an unusable tool result
            self._end(task_id)
            return Action.final(f"<answer>failed: {type(err).__name__}</answer>")

    def _end(self, task_id: str) -> None:
        self._scripts.pop(task_id, None)
        recovery = self._recovery.pop(task_id, None)
        if recovery is not None:
            self.retry_wait_s += recovery.waited_s


class SearchExpert(ScriptedExpert):
    """The scripted expert policy for the ``search`` environment (``qa`` and ``table`` tasks).

    Args:
        ix: the world's index (to read evidence names).
        tasks: the world's tasks (the expert finds each episode's task by id).
    """

    def __init__(self, ix: WorldIndex, tasks: list[Task]) -> None:
        super().__init__(tasks)
        self.ix = ix

    def _plan(self, task: Task) -> list[tuple[str, str]]:
        """What to look up: search queries, each with the page title that answers it."""
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
        return list(dict.fromkeys(lookups))

    def _script(self, task: Task) -> Script:
        """Search each lookup, open the page with the matching title (else the first result), answer."""
        lookups, seen = self._plan(task), []
        i = 0
        while i < len(lookups):
            query, title = lookups[i]
            results = parse_search_results((yield Action.call("web_search", query=query)))
            if not results:
                results = parse_search_results((yield Action.call("web_search", query=f"{query} page")))
            url = next((u for u, t in results if t == title), results[0][0] if results else None)
            if url is not None:
                seen.append((yield Action.call("web_extractor", url=url)))
            if i == 0 and seen and task.type == "table" and task.template in _LIST_TITLES:
                lookups += [(t, t) for t, _ in _LINK.findall(seen[0])[1:]]  # the first link is the list's owner
            i += 1
        return self._answer(task, "\n".join(seen))

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


def search_expert(world: Path, tasks: list[Task]) -> SearchExpert:
    """The scripted expert of ``search`` (the spec's ``expert`` hook): entity names read from ``world``'s graph."""
    from simrl.world import load_graph

    return SearchExpert(WorldIndex(load_graph(world)), tasks)
