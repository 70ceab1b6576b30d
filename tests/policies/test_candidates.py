"""Candidate actions: built from tool schemas and episode values only (an unseen tool set works), bounded,
deterministic; the records expert's actions project onto them (perturbed runs included); recovery is
expressible (repeat, continue a cursor) but never preferred; the embedded policy imports no expert or templates."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from simrl.envs.base import make
from simrl.perturb import PerturbedEnv, load_schedule
from simrl.perturb.schedule import SHIPPED
from simrl.policies.candidates import (
    MAX_CANDIDATES,
    action_key,
    candidate_actions,
    project,
    tagged_candidates,
)
from simrl.policies.records_expert import RecordsExpert
from simrl.rollout import rollout
from simrl.types import Action, Observation, Step, ToolResult, Turn
from simrl.world import load_tasks

# A made-up service no code of simrl knows: a paged "ticket" listing with a cursor and an enum status.
TOOLS = [
    {"type": "function", "function": {
        "name": "lookup_customer", "description": "Find a customer by name.",
        "parameters": {"type": "object", "properties": {"customer_name": {"type": "string"}},
                       "required": ["customer_name"]}}},
    {"type": "function", "function": {
        "name": "list_tickets", "description": "Tickets of a customer, one page at a time.",
        "parameters": {"type": "object", "properties": {
            "customer_id": {"type": "string"}, "status": {"type": "string", "enum": ["open", "closed"]},
            "page_token": {"type": "string"}}, "required": ["customer_id", "status"]}}},
]
PROMPT = "How many open tickets does Zorblax Industries have?"


def _turn(action: Action, content: str, error: bool = False) -> Turn:
    result = ToolResult(name=action.tool_calls[0].name, content=content, is_error=error)
    return Turn(action=action, step=Step(observation=Observation(text=content, results=[result])))


def _episode() -> tuple[dict, Observation, list[Turn]]:
    view = {"task_id": "t", "type": "custom", "prompt": PROMPT}
    initial = Observation(text=PROMPT, tools=TOOLS)
    find = _turn(Action.call("lookup_customer", customer_name="Zorblax Industries"),
                 json.dumps({"matches": [{"id": "cust:0042", "name": "Zorblax Industries"}]}))
    page = {"tickets": [{"id": "tk:1", "opened": "2024-02-01", "cost": 3}, {"id": "tk:2", "opened": "2023-05-06",
                                                                          "cost": 4}],
            "next_page_token": "abc123"}
    listing = _turn(Action.call("list_tickets", customer_id="cust:0042", status="open"), json.dumps(page))
    return view, initial, [find, listing]


def test_unseen_tool_set_schema_only():
    view, initial, turns = _episode()
    first = candidate_actions(view, initial, [])
    assert Action.call("lookup_customer", customer_name="Zorblax Industries") in first
    ids = {a.tool_calls[0].arguments["customer_id"] for a in first if a.tool_calls and a.tool_calls[0].name ==
           "list_tickets"}
    assert ids and "cust:0042" not in ids  # before any result, only the prompt's values
    after_find = candidate_actions(view, initial, turns[:1])
    assert Action.call("list_tickets", customer_id="cust:0042", status="open") in after_find
    assert Action.call("list_tickets", customer_id="cust:0042", status="closed") in after_find
    tagged = dict((action_key(a), tags) for a, tags in tagged_candidates(view, initial, turns))
    follow = Action.call("list_tickets", customer_id="cust:0042", status="open", page_token="abc123")
    assert "tag_continue_page_token" in tagged[action_key(follow)]  # the cursor is expressible, from the schema
    answers = {a.answer for a in candidate_actions(view, initial, turns) if a.is_final}
    assert {"2", "7", "tk:2", "2023-05-06"} <= answers  # count, sum of cost, earliest opened (its id and date)


def test_a_name_with_a_middle_initial_is_one_value_not_two_sentences():
    prompt = "Record that David N. Smith joined Zorblax Industries. Use the tools."  # a sentence still ends at "s."
    names = {a.tool_calls[0].arguments["customer_name"] for a in candidate_actions(
        {"prompt": prompt}, Observation(text=prompt, tools=TOOLS), []) if a.tool_calls and a.tool_calls[0].name ==
        "lookup_customer"}
    assert {"David N. Smith", "Zorblax Industries"} <= names and "Use" not in " ".join(names)


def test_a_tool_that_requires_nothing_is_tried_with_each_scalar_parameter_alone():
    """``search``'s web_search takes exactly one of query / queries (a schema's `required` cannot say so): the
    candidates call it with the prompt's values as the query, then fetch observed URLs, then answer with a
    page's link texts: searching is expressible from the schemas alone."""
    from simrl.envs.search_tools import SEARCH_TOOLS

    view = {"task_id": "t", "type": "qa", "prompt": "Who created the film Wandering Into?"}
    initial = Observation(text=view["prompt"], tools=SEARCH_TOOLS)
    first = candidate_actions(view, initial, [])
    assert Action.call("web_search", query="Wandering Into") in first
    assert Action.call("web_search") in first and not any(
        c.arguments.get("queries") for a in first for c in a.tool_calls)  # arrays are not filled alone
    hits = "A search for 'Wandering Into' found 1 results:\n\n[1] https://w.example/wiki/Wandering_Into\nTitle: x"
    searched = [_turn(Action.call("web_search", query="Wandering Into"), hits)]
    assert Action.call("web_extractor", url="https://w.example/wiki/Wandering_Into") in candidate_actions(
        view, initial, searched)
    page = "# Wandering Into\n\n| Creator | [Ada Quill](https://w.example/wiki/Ada_Quill) |"
    fetched = searched + [_turn(Action.call("web_extractor", url="https://w.example/wiki/Wandering_Into"), page)]
    assert "Ada Quill" in {a.answer for a in candidate_actions(view, initial, fetched) if a.is_final}


def test_recovery_is_expressible_after_an_error():
    view, initial, turns = _episode()
    failed = _turn(Action.call("list_tickets", customer_id="cust:0042", status="open"),
                   "429 Too Many Requests: retry after 2 s", error=True)
    tagged = tagged_candidates(view, initial, turns[:1] + [failed])
    repeat = [tags for a, tags in tagged if action_key(a) == action_key(failed.action)]
    assert repeat and "tag_repeat_last" in repeat[0] and "tag_after_error" in repeat[0]
    assert tagged[0][0] == failed.action  # listed, not chosen: the policy decides


def test_candidates_are_bounded_and_deterministic(tiny_world):
    tasks = load_tasks(tiny_world, type="records")
    trajs = asyncio.run(rollout(lambda: make("mcp-world", world=tiny_world, transport="inprocess"),
                                RecordsExpert(tiny_world, tasks), tasks, max_turns=30))
    for traj, task in zip(trajs, tasks):
        for i in range(len(traj.turns) + 1):
            a = candidate_actions(task.policy_view(), traj.initial, traj.turns[:i])
            b = candidate_actions(task.policy_view(), traj.initial, traj.turns[:i])
            assert [action_key(x) for x in a] == [action_key(x) for x in b]
            assert 1 <= len(a) <= MAX_CANDIDATES and len({action_key(x) for x in a}) == len(a)


@pytest.mark.parametrize("schedule,fault_rate", [(None, 0.0), (None, 0.2), ("records-edge-cases", 0.0),
                                                 ("mcpmark", 0.0)])
def test_expert_actions_project_onto_candidates(tiny_world, schedule, fault_rate):
    tasks = load_tasks(tiny_world, type="records")

    def make_env():
        env = make("mcp-world", world=tiny_world, transport="inprocess", fault_rate=fault_rate)
        return env if schedule is None else PerturbedEnv(env, load_schedule(SHIPPED / f"{schedule}.yaml"),
                                                         progress=1.0, seed=1)

    trajs = asyncio.run(rollout(make_env, RecordsExpert(tiny_world, tasks), tasks, max_turns=60))
    assert all(t.status == "success" for t in trajs)
    hits = total = 0
    for traj, task in zip(trajs, tasks):
        for i, turn in enumerate(traj.turns):
            hits += project(turn.action, candidate_actions(task.policy_view(), traj.initial, traj.turns[:i])) \
                is not None
            total += 1
    assert hits / total >= 0.97, (hits, total)  # measured: 1.0 unperturbed and with 10% faults


def test_project_maps_optional_arguments_and_markup():
    cands = [Action.call("find", name="A"), Action.call("find", name="B"), Action.final("3")]
    assert project(Action.call("find", name="B", type="city"), cands) == 1
    assert project(Action.final("<answer>3</answer>"), cands) == 2
    assert project(Action.call("find", name="C"), cands) is None


def test_embedded_policy_imports_no_expert_or_templates():
    root = Path(__file__).resolve().parents[2] / "simrl"
    for name in ("policies/candidates.py", "policies/features.py", "policies/scorer.py", "trainers/embedded.py"):
        text = (root / name).read_text(encoding="utf-8")
        assert not re.search(r"simrl\.policies\.expert|simrl\.world\.templates|records_expert", text), name


PAGE = """Title: Blue Owl Ltd

Markdown Content:
# Blue Owl Ltd

| Organization | |
|---|---|
| Founded | March 3, 1990 |
| Headquarters | [Springfield](https://www.w.example/wiki/springfield) |
| Founders | [Ann Lee](https://www.w.example/wiki/ann_lee), [Bo Kim](https://www.w.example/wiki/bo_kim) |
| Employees | 1,234 |

Blue Owl Ltd is a company."""


def test_a_table_answer_renders_the_records_read_with_the_columns_the_prompt_asks_for():
    from simrl.policies.candidate_tables import asked_columns, records, table_answer

    prompt = "List every organization in Springfield. Answer with a markdown table with the columns: name, founded, employees."
    cols = asked_columns(prompt)
    assert cols == ["name", "founded", "employees"]
    assert records(PAGE) == [{"name": "Blue Owl Ltd", "Founded": "March 3, 1990", "Headquarters": "Springfield",
                              "Founders": "Ann Lee, Bo Kim", "Employees": "1,234"}]
    other = PAGE.replace("Blue Owl Ltd", "Red Fox Inc").replace("1,234", "88")
    listing = "# Organizations\n\n| Name | Details |\n|---|---|\n| [Red Fox Inc](https://x.example/r) | founded 1990 |"
    table = table_answer(cols, [PAGE, listing, other, PAGE])  # the listing lacks columns; a page read twice counts once
    assert table == ("| name | founded | employees |\n|---|---|---|\n| Blue Owl Ltd | March 3, 1990 | 1,234 |\n"
                     "| Red Fox Inc | March 3, 1990 | 88 |")
    turns = [Turn(action=Action.call("web_extractor", url="https://www.w.example/wiki/blue_owl"),
                  step=Step(observation=Observation(text=PAGE, results=[ToolResult(name="web_extractor", content=PAGE)])))]
    from simrl.envs.search_tools import SEARCH_TOOLS

    tagged = tagged_candidates({"prompt": prompt}, Observation(text=prompt, tools=SEARCH_TOOLS), turns)
    answers = [(a.answer, tags) for a, tags in tagged if a.is_final]
    assert answers[0] == (table_answer(cols, [PAGE]), ("tag_answer", "tag_answer_table"))
    assert asked_columns("How many people are recorded as members of Acme Ltd, past and present? Use the record "
                         "tools.") is None  # no table asked: no table answer (the quickstart's prompts)
    plain = tagged_candidates({"prompt": "Who founded Blue Owl Ltd?"}, Observation(text="", tools=SEARCH_TOOLS), turns)
    assert not any("tag_answer_table" in tags for _, tags in plain)


def test_a_call_with_arguments_never_projects_onto_the_call_without_any():
    from simrl.envs.search_tools import SEARCH_TOOLS

    cands = candidate_actions({"prompt": "Who founded Blue Owl Ltd?"}, Observation(text="", tools=SEARCH_TOOLS), [])
    assert Action.call("web_search") in cands  # web_search requires nothing: its bare call is a candidate
    i = project(Action.call("web_search", query="Blue Owl Ltd"), cands)
    assert i is not None and cands[i] == Action.call("web_search", query="Blue Owl Ltd")
    assert project(Action.call("web_search", query="Organizations of Oz"), cands) is None  # not web_search()
    assert cands[project(Action.call("web_search"), cands)] == Action.call("web_search")


LIST = """# Organizations headquartered in Springfield

See also [Springfield](https://w.example/wiki/springfield).

| Name | Details |
|---|---|
""" + "\n".join(f"| [Org {i}](https://w.example/wiki/org_{i}) | founded 199{i} |" for i in range(9))


def _read(url: str, text: str) -> Turn:
    return Turn(action=Action.call("web_extractor", url=url),
                step=Step(observation=Observation(text=text, results=[ToolResult(name="web_extractor", content=text)])))


def test_walking_a_list_page_is_expressible_however_many_pages_were_read_in_between():
    from simrl.envs.search_tools import SEARCH_TOOLS

    view, initial = {"prompt": "List every organization in Springfield."}, Observation(text="", tools=SEARCH_TOOLS)
    turns = [_read("https://w.example/list/orgs", LIST)]
    for i in range(5):  # each org page links elsewhere: the list's next links leave the 6 newest URLs
        turns.append(_read(f"https://w.example/wiki/org_{i}", PAGE.replace("Blue Owl Ltd", f"Org {i}")))
    tagged = tagged_candidates(view, initial, turns)
    frontier = [a.tool_calls[0].arguments["url"] for a, tags in tagged if "tag_frontier" in tags]
    assert [u for u in frontier if "org_" in u] == [f"https://w.example/wiki/org_{i}" for i in (5, 6, 7, 8)]
    plain = [a for a, tags in tagged if "tag_frontier" not in tags]
    assert Action.call("web_extractor", url="https://w.example/wiki/org_5") not in plain  # only the frontier has it
    queries = [a.tool_calls[0].arguments.get("query") for a in plain if a.tool_calls and a.tool_calls[0].name == "web_search"]
    assert {"Ann Lee", "Org 0"} <= set(queries)  # a query (no observed key names it) takes the names read so far
    answers = [a.answer for a, _ in tagged if a.is_final]
    assert answers[:3] == ["March 3, 1990", "1990", "Springfield"]  # the page's facts, a date's year, first


def test_a_pages_facts_are_told_apart_by_their_field_names():
    """Before, every fact of a page was the same text to the scorer (``tag_answer_text_field`` + ``answer name``):
    a headquarters, a founder and a city of birth could not be told apart, whatever was learned."""
    from simrl.envs.search_tools import SEARCH_TOOLS

    person = PAGE.replace("Blue Owl Ltd", "Ann Lee").replace("| Organization |", "| Person |").replace(
        "| Founded | March 3, 1990 |", "| Born | May 2, 1950, [Shelbyville](https://www.w.example/wiki/shelbyville) |")
    view, initial = {"prompt": "In which city is Blue Owl Ltd headquartered?"}, Observation(text="", tools=SEARCH_TOOLS)
    for page, want in ((PAGE, {"Springfield": "tag_field_headquarters", "Ann Lee": "tag_field_founders",
                               "March 3, 1990": "tag_field_founded", "1990": "tag_field_founded"}),
                       (person, {"Shelbyville": "tag_field_born", "May 2, 1950": "tag_field_born"})):
        tagged = tagged_candidates(view, initial, [_read("https://www.w.example/wiki/x", page)])
        facts = {a.answer: tags for a, tags in tagged if a.is_final and "tag_answer_done" not in tags}
        for answer, tag in want.items():
            assert tag in facts[answer], (answer, facts[answer])
    assert texts_differ(PAGE, "Springfield", "Ann Lee")  # both names: once the same text, now told apart


def texts_differ(page: str, a: str, b: str) -> bool:
    """Whether answers ``a`` and ``b`` read off ``page`` are different texts to the scorer's action encoder."""
    from simrl.envs.search_tools import SEARCH_TOOLS
    from simrl.policies.features import action_text

    tagged = tagged_candidates({"prompt": "?"}, Observation(text="", tools=SEARCH_TOOLS), [_read("https://x.example", page)])
    texts = {final.answer: action_text(final, tags) for final, tags in tagged if final.is_final}
    return texts[a] != texts[b]


def _results(query: str, n: int) -> str:
    """A web_search result page of ``n`` dated news results (the search engine's layout)."""
    rows = [f"[{k}] https://w.example/news/{1950 + k}-01-0{k % 9 + 1}/ceo_{k}\nTitle: Ceo {k} named chief executive of "
            f"Acme Ltd\nSnippet: The term ended on March 3, {1960 + k}.\nDate: {1950 + k}-01-0{k % 9 + 1}"
            for k in range(1, n + 1)]
    return f"A search for '{query}' found {n} results:\n\n" + "\n\n".join(rows)


def test_a_search_can_be_narrowed_and_every_result_fetched():
    """Who led the company that acquired X at the time: the page that says so is one of many dated news pages of the
    acquirer, which a search for its name alone may rank past the first 10 results. From what the policy read, the
    candidates query a name read with the prompt's words, narrow the last query to each year its results write,
    and fetch every URL of a result list (not only the first 6); none of it after a JSON result."""
    from simrl.envs.search_tools import SEARCH_TOOLS
    from simrl.policies.candidate_pages import MAX_LISTED, MAX_YEARS, prompt_phrases

    prompt = "Who was the chief executive of the company that acquired Beta Inc at the time of the acquisition?"
    assert prompt_phrases(prompt) == ("chief executive", "company", "acquired")
    view, initial = {"prompt": prompt}, Observation(text=prompt, tools=SEARCH_TOOLS)
    news = ("# Acme Ltd acquires Beta Inc\n\n*May 1, 2008*\n\nOn May 1, 2008, [Acme Ltd](https://w.example/wiki/Acme_Ltd)"
            " completed its acquisition of [Beta Inc](https://w.example/wiki/Beta_Inc).")
    read = [_turn(Action.call("web_extractor", url="https://w.example/news/2008-05-01/acme"), news)]
    tagged = {action_key(a): tags for a, tags in tagged_candidates(view, initial, read)}
    ask = Action.call("web_search", query="Acme Ltd chief executive")
    assert "tag_refined" in tagged[action_key(ask)]
    assert action_key(Action.call("web_search", query="Beta Inc company")) in tagged  # every name, phrase by phrase
    listing = _results("Acme Ltd chief executive", 10)
    searched = read + [_turn(ask, listing)]
    cands = candidate_actions(view, initial, searched)
    urls = [a.tool_calls[0].arguments["url"] for a in cands if a.tool_calls and a.tool_calls[0].name == "web_extractor"]
    assert all(f"https://w.example/news/{1950 + k}-01-0{k % 9 + 1}/ceo_{k}" in urls for k in range(1, 11))
    queries = {a.tool_calls[0].arguments.get("query") for a in cands if a.tool_calls}
    assert {"Acme Ltd chief executive 1951", "Acme Ltd chief executive 1970"} <= queries  # a Date, a snippet's year
    narrowed = searched + [_turn(Action.call("web_search", query="Acme Ltd chief executive 1970"), _results("x", 1))]
    assert Action.call("web_search", query="Acme Ltd chief executive 1961") in candidate_actions(view, initial, narrowed)
    assert len(candidate_actions(view, initial, searched + [_turn(ask, _results("x", 40))])) <= MAX_CANDIDATES
    assert MAX_LISTED == 10 and MAX_YEARS <= 20
    as_json = [_turn(Action.call("web_extractor", url="https://w.example/a"), json.dumps({"link": "Acme Ltd"}))]
    assert not any(set(tags) & {"tag_refined", "tag_dated"} or any(t.startswith("tag_listed") for t in tags)
                   for _, tags in tagged_candidates(view, initial, as_json))
