"""The actions a small policy chooses among at a turn, derived from the observation text only.

``candidate_actions(task_view, initial, turns)`` picks a generator by the tool names of
``initial.tools``:

* **record tools** (``find_by_name``, ``list_members``, ...): ``find_by_name`` for each name of the
  prompt (typed by the prompt format of :mod:`simrl.world.templates`); for each id those lookups
  returned, the listings (``list_members`` / ``list_products`` of an organization,
  ``search_records(type="organization", filters={"headquartered_in": city})``); the same listing with
  the last page's ``next_cursor`` (a real cursor or a perturbation's continuation token); writes built
  from the ids and the prompt's numbers and dates; answers computed from the pages of the current
  listing (count of distinct records, sum of ``employees``, name of the earliest ``released``) and
  ``done`` after a successful write.
* **search tools** (``web_search``, ``web_extractor``): searches for the prompt's names, for the link
  texts of the last fetched page and for result titles seen; fetches of the last results' URLs (the
  one titled like the query first); answers read off the last fetched page (title, infobox values,
  links, dates as ``YYYY-MM-DD``, years), as ``<answer>X</answer>``.
* **any other tools**: each tool with one required string argument, given each prompt name; ``done``.

Every generator starts with the recovery a careful agent makes after a disturbed result, read from
the text by :class:`simrl.policies.expert.ToolRecovery` (retry 429 / 5xx / timeouts, fix the argument a
422 names, narrow after a truncated response, follow a ``"page": N`` notice, repeat a cut-short call,
re-query after an empty result). Deterministic: the same history gives the same list in the same
order; duplicates are removed (actions compared by calls and answer, not ``text``).
:func:`tagged_candidates` also returns each candidate's provenance tags (features of the policy).
"""

from __future__ import annotations

import re
from typing import Any

from simrl.policies.expert import ToolRecovery
from simrl.train.features import (
    iso_date,
    label_token,
    parse_page,
    parse_search_results,
    prompt_entities,
    prompt_numbers,
    read_records,
)
from simrl.types import Action, Observation, ToolCall, Turn

Tagged = tuple[Action, tuple[str, ...]]
"""A candidate and its provenance tags (e.g. ``("tag_continue",)``)."""
RECORD_TOOLS = frozenset({"find_by_name", "list_members", "list_products", "search_records"})
SEARCH_TOOLS = frozenset({"web_search", "web_extractor"})
LIST_TOOLS = ("list_members", "list_products", "search_records")
WRITE_TOOLS = frozenset({"update_record", "add_membership", "end_membership", "appoint_ceo"})
_PAGING = ("cursor", "page", "limit")
_DATED = re.compile(r"^(?:Page )?[Tt]itle: (.*)\n(?:Snippet|Summary): .*\n(?:Date|Published): \d{4}-", re.MULTILINE)
QUOTAS = {"recover": 2, "extract": 4, "answer": 6, "search": 6}
"""Most candidates of each group for the search tools (16 at most with recovery)."""


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def action_key(action: Action) -> str:
    """The identity of an action for matching: its calls (name, arguments) and answer, not ``text``/ids."""
    return repr((tuple((c.name, _freeze(c.arguments)) for c in action.tool_calls), action.answer))


def candidate_actions(task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> list[Action]:
    """The candidate actions at this turn (deterministic, deduplicated; see the module docstring)."""
    return [a for a, _ in tagged_candidates(task_view, initial, turns)]


def tagged_candidates(task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> list[Tagged]:
    """:func:`candidate_actions` with each candidate's tags; ``called_before`` / ``same_as_last`` added."""
    names = {t.get("function", {}).get("name") for t in initial.tools}
    pool = _Pool()
    _recovery(pool, initial, turns)
    if names & RECORD_TOOLS:
        _records(pool, task_view.get("prompt", initial.text), turns, names)
    elif names & SEARCH_TOOLS:
        _search(pool, task_view.get("prompt", initial.text), turns)
    else:
        _generic(pool, task_view.get("prompt", initial.text), initial)
    if not pool.items:  # never leave a policy without a move
        pool.add(Action.final("done"), "answer", "tag_answer_fallback")
    done = {action_key(t.action) for t in turns}
    last = action_key(turns[-1].action) if turns else None
    return [(a, tags + (("tag_called_before",) if k in done else ()) + (("tag_same_as_last",) if k == last else ()))
            for k, (a, tags) in pool.items.items()]


class _Pool:
    """Ordered, deduplicated candidates with per-group quotas."""

    def __init__(self) -> None:
        self.items: dict[str, Tagged] = {}
        self.counts: dict[str, int] = {}

    def full(self, group: str, quota: int | None) -> bool:
        return quota is not None and self.counts.get(group, 0) >= quota

    def add(self, action: Action, group: str, *tags: str, quota: int | None = None) -> None:
        if self.full(group, quota):
            return
        key = action_key(action)
        if key in self.items:
            return
        self.counts[group] = self.counts.get(group, 0) + 1
        self.items[key] = (action, (f"tag_{group}", *tags))


def _ok(turn: Turn) -> str | None:
    """The content of a turn's first result when it is not an error, else None."""
    results = turn.step.observation.results
    return results[0].content if results and not results[0].is_error else None


def _call(turn: Turn) -> ToolCall | None:
    return turn.action.tool_calls[0] if turn.action.tool_calls else None


def _signature(call: ToolCall) -> str:
    """A call without its paging arguments (cursor, page, limit)."""
    return repr((call.name, _freeze({k: v for k, v in call.arguments.items() if k not in _PAGING})))


def _strip(call: ToolCall, *drop: str) -> dict[str, Any]:
    return {k: v for k, v in call.arguments.items() if k not in drop}


def _recovery(pool: _Pool, initial: Observation, turns: list[Turn]) -> None:
    """The follow-up :class:`ToolRecovery` makes after the last result (retry, fix, narrow, page, repeat)."""
    if not turns or _call(turns[-1]) is None or not turns[-1].step.observation.results:
        return
    last = turns[-1]
    result = last.step.observation.results[0]
    follow = ToolRecovery(initial.tools).next(last.action, result)
    if isinstance(follow, Action):
        same = action_key(follow) == action_key(last.action)
        why = ("retry" if result.is_error else "repeat") if same else "fix" if result.is_error else "other"
        pool.add(follow, "recover", f"tag_recover_{why}")


# -- record tools ---------------------------------------------------------------------------------
def _found(turns: list[Turn]) -> dict[str, list[str]]:
    """Entity ids by type that ``find_by_name`` returned under the exact name asked for, in order."""
    out: dict[str, list[str]] = {}
    for turn in turns:
        call, text = _call(turn), _ok(turn)
        if call is None or call.name != "find_by_name" or text is None:
            continue
        page = read_records(text)
        asked, kind = str(call.arguments.get("name", "")).casefold(), call.arguments.get("type")
        for r in (page[0] if page else []):
            if str(r.get("name", "")).casefold() == asked and (kind is None or r.get("type", kind) == kind):
                ids = out.setdefault(str(r.get("type") or str(r.get("id", "")).split(":")[0]), [])
                if r.get("id") and r["id"] not in ids:
                    ids.append(r["id"])
    return out


def _listing(turns: list[Turn]) -> tuple[ToolCall, list[dict[str, Any]], str | None] | None:
    """The current listing: (its first call, the distinct records of its pages, the last page's cursor)."""
    last_i = next((i for i in range(len(turns) - 1, -1, -1)
                   if _call(turns[i]) is not None and _call(turns[i]).name in LIST_TOOLS), None)
    if last_i is None:
        return None
    sig, pages, first, cursor = _signature(_call(turns[last_i])), [], _call(turns[last_i]), None
    for turn in reversed(turns[:last_i + 1]):
        call = _call(turn)
        if call is None or _signature(call) != sig:
            continue
        page = read_records(_ok(turn) or "")
        if page is not None:
            pages.append(page[0])
            cursor = page[1] if len(pages) == 1 else cursor
        first = call
        if not call.arguments.get("cursor"):
            break
    records: dict[str, dict[str, Any]] = {}
    for page in reversed(pages):
        for r in page:
            records.setdefault(str(r.get("id", len(records))), r)
    return first, list(records.values()), cursor


def _records(pool: _Pool, prompt: str, turns: list[Turn], tools: set[str]) -> None:
    last = turns[-1] if turns else None
    listing = _listing(turns)
    if last is not None and listing is not None and _call(last) is not None and _call(last).name in LIST_TOOLS:
        page = read_records(_ok(last) or "")
        if page is not None and page[1]:
            pool.add(Action.call(_call(last).name, **_strip(_call(last), "cursor"), cursor=page[1]), "continue")
            pool.add(Action.call(listing[0].name, **_strip(listing[0], "cursor", "limit"), cursor=page[1]), "continue")
    if listing is not None and listing[1]:
        _listing_answers(pool, listing[1], "tag_listing_open" if listing[2] else "tag_listing_complete")
    if any(_call(t) is not None and _call(t).name in WRITE_TOOLS and _ok(t) is not None for t in turns):
        pool.add(Action.final("<answer>done</answer>"), "answer", "tag_answer_done")
    for i, (name, kind) in enumerate(prompt_entities(prompt)):
        args = {"name": name} | ({"type": kind} if kind else {})
        pool.add(Action.call("find_by_name", **args), "find", f"tag_prompt_{kind or 'name'}", f"tag_pos_{i}")
    found = _found(turns)
    orgs, cities, people = found.get("organization", []), found.get("city", []), found.get("person", [])
    for org in orgs:
        for tool in ("list_members", "list_products"):
            if tool in tools:
                pool.add(Action.call(tool, org_id=org), "list", f"tag_{tool}")
    for city in cities:
        pool.add(Action.call("search_records", type="organization", filters={"headquartered_in": city}),
                 "list", "tag_orgs_in_city")
    numbers, dates = prompt_numbers(prompt)
    if "update_record" in tools:
        for org in orgs:
            for n in numbers:
                pool.add(Action.call("update_record", id=org, fields={"employees": n}), "write", "tag_write_employees")
            for city in cities:
                pool.add(Action.call("update_record", id=org, fields={"headquartered_in": city}), "write",
                         "tag_write_headquarters")
    if "add_membership" in tools:
        for person in people:
            for org in orgs:
                for date in dates:
                    pool.add(Action.call("add_membership", person_id=person, org_id=org, start=date), "write",
                             "tag_write_membership")


def _listing_answers(pool: _Pool, records: list[dict[str, Any]], state: str) -> None:
    """Count, sum of employees, earliest released: the answers a listing's records support."""
    pool.add(Action.final(f"<answer>{len(records)}</answer>"), "answer", "tag_answer_count", state)
    employees = [r.get("employees") for r in records]
    if all(isinstance(e, int) and not isinstance(e, bool) for e in employees):
        pool.add(Action.final(f"<answer>{sum(employees)}</answer>"), "answer", "tag_answer_sum_employees", state)
    released = [r for r in records if isinstance(r.get("released"), str) and r.get("name")]
    if released:
        first = min(released, key=lambda r: r["released"])
        pool.add(Action.final(f"<answer>{first['name']}</answer>"), "answer", "tag_answer_earliest_released", state)


# -- search tools ---------------------------------------------------------------------------------
def _trailing(turns: list[Turn], tool: str) -> tuple[ToolCall, str] | None:
    """The last call when it is a ``tool`` call, with the successful results of its run of calls joined
    (the parts of one page or one result list served in several calls)."""
    if not turns or _call(turns[-1]) is None or _call(turns[-1]).name != tool:
        return None
    call, texts = _call(turns[-1]), []
    for turn in reversed(turns):
        if _call(turn) is None or _signature(_call(turn)) != _signature(call):
            break
        texts.append(_ok(turn) or "")
    return call, "\n\n".join(reversed(texts))


def _search(pool: _Pool, prompt: str, turns: list[Turn]) -> None:
    q = QUOTAS
    searched = _trailing(turns, "web_search")
    if searched is not None:
        query = str(searched[0].arguments.get("query", ""))
        results = parse_search_results(searched[1])
        for url, title in results:
            if title.casefold() == query.casefold() or f"{title} page".casefold() == query.casefold():
                pool.add(Action.call("web_extractor", url=url), "extract", "tag_title_match", quota=q["extract"])
        for k, (url, _) in enumerate(results):
            pool.add(Action.call("web_extractor", url=url), "extract", f"tag_rank_{k + 1}", quota=q["extract"])
        if not results and query and not query.endswith(" page"):
            pool.add(Action.call("web_search", query=f"{query} page"), "search", "tag_requery_page")
    fetched = _trailing(turns, "web_extractor")
    page = parse_page(fetched[1]) if fetched is not None else None
    if page is not None:
        _page_answers(pool, page)
    for i, (name, _) in enumerate(prompt_entities(prompt)):
        pool.add(Action.call("web_search", query=name), "search", "tag_search_prompt", f"tag_pos_{i}", quota=q["search"])
    for rows in ([] if page is None else page.rows):
        for text, _ in rows[2]:
            pool.add(Action.call("web_search", query=text), "search", "tag_search_row", f"tag_row_{label_token(rows[0])}",
                     quota=q["search"])
    for title, news in _seen_titles(turns)[:3]:
        pool.add(Action.call("web_search", query=title), "search", "tag_search_title", *(("tag_news",) * news),
                 quota=q["search"])
    for text, _ in ([] if page is None else page.links[:3]):
        pool.add(Action.call("web_search", query=text), "search", "tag_search_link", quota=q["search"])


def _page_answers(pool: _Pool, page: Any) -> None:
    """Answers read off a fetched page: its title, infobox values (links, dates, years), news date, body links."""
    def add(value: str, *tags: str) -> None:
        pool.add(Action.final(f"<answer>{value}</answer>"), "answer", f"tag_page_{page.kind or 'none'}", *tags,
                 quota=QUOTAS["answer"])

    if page.date:
        add(page.date, "tag_answer_news_date")
    add(page.title, "tag_answer_title")
    for label, value, links in page.rows:
        for text, _ in links:
            add(text, "tag_answer_row", f"tag_row_{label_token(label)}")
        date = iso_date(value)
        if date:
            add(date[:4], "tag_answer_year", f"tag_row_{label_token(label)}")
            add(date, "tag_answer_date", f"tag_row_{label_token(label)}")
        elif value.isdigit() and len(value) == 4:
            add(value, "tag_answer_year", f"tag_row_{label_token(label)}")
    for text, _ in page.links[:3]:
        add(text, "tag_answer_link")


def _seen_titles(turns: list[Turn]) -> list[tuple[str, bool]]:
    """``(title, dated)`` of the results of the latest ``web_search`` of the history not searched already,
    dated results (news) first."""
    asked = {str(c.arguments.get("query", "")).casefold() for t in turns for c in t.action.tool_calls}
    for turn in reversed(turns):
        call, text = _call(turn), _ok(turn)
        if call is not None and call.name == "web_search" and text:
            dated = set(_DATED.findall(text))
            titles = [(t, t in dated) for _, t in parse_search_results(text) if t.casefold() not in asked]
            return sorted(titles, key=lambda x: not x[1])
    return []


# -- any other tools ------------------------------------------------------------------------------
def _generic(pool: _Pool, prompt: str, initial: Observation) -> None:
    names = [n for n, _ in prompt_entities(prompt)][:3] or [" ".join(prompt.split()[:6])]
    for tool in initial.tools:
        fn = tool.get("function", {})
        params = fn.get("parameters") or {}
        required = params.get("required") or []
        if len(required) == 1 and (params.get("properties", {}).get(required[0]) or {}).get("type") == "string":
            for name in names:
                pool.add(Action.call(fn["name"], **{required[0]: name}), "generic")
    pool.add(Action.final("done"), "answer", "tag_answer_done")
