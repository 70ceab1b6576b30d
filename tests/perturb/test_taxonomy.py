"""The taxonomy: every type is registered and documented; inject output and control checks agree;
hand-written compliant and non-compliant observations for each type; docstring examples run."""

from __future__ import annotations

import doctest
import importlib
import json

import pytest

from simrl.perturb import PerturbationType, PerturbContext, Recovery, all_classes, perturbation_class
from simrl.types import ToolCall, ToolResult
from tests.perturb.fakes import THINGS, TOOLS, search_text

SCHEMAS = {t["function"]["name"]: t for t in TOOLS}
PAGE = json.dumps({"records": THINGS[:4], "next_cursor": None, "total": 4})  # a complete result
LIST = ToolCall(name="list_things", arguments={})
SEARCH = ToolCall(name="web_search", arguments={"query": "acme"})
PARAMS = {"forced_pagination": {"page_size": 2}, "oversized_response": {"max_chars": 100}}


def _ctx(call: ToolCall, key: str = "k") -> PerturbContext:
    return PerturbContext(call=call, key=key, tool_schema=SCHEMAS[call.name])


def _make(kind: str):
    return perturbation_class(kind).model_validate(PARAMS.get(kind, {}))


def test_every_type_is_registered_and_documented():
    classes = all_classes()
    assert [c.kind for c in classes] == list(PerturbationType)
    for cls in classes:
        assert isinstance(cls.recovery, Recovery) and cls.describe()
        assert ">>>" in (cls.__doc__ or ""), f"{cls.__name__} has no docstring example"
    assert [c.kind.value for c in classes if not c.recoverable] == ["outage"]


@pytest.mark.parametrize("module", ["formats", "taxonomy", "faults", "content", "reshape", "schedule", "inject"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"simrl.perturb.{module}"))
    assert result.failed == 0


def test_records_expert_docstring_example():
    assert doctest.testmod(importlib.import_module("simrl.policies.records_expert")).failed == 0


@pytest.mark.parametrize("kind", [t.value for t in PerturbationType])
@pytest.mark.parametrize("call", [LIST, SEARCH], ids=["page", "search"])
def test_injected_output_complies_with_its_own_check(kind, call):
    """Inject mode produces what control mode asks the world model for."""
    p = _make(kind)
    result = ToolResult(name=call.name, content=PAGE if call is LIST else search_text("acme", 10))
    ctx = _ctx(call)
    out = p.apply(call, None if p.phase == "before" else result, ctx)
    assert out is not None, f"{kind} did not apply to {call.name}"
    assert p.complies(out.content, ctx), out.content
    assert not p.complies(result.content, ctx), f"{kind}: the unperturbed result passed as perturbed"
    instruction = p.control_instruction(ctx)
    assert isinstance(instruction, str) and len(instruction) > 30


NOT_DATA = json.dumps({"records": THINGS[:2], "next_cursor": None, "total": 2})
CASES = {  # kind -> (compliant observations, non-compliant observations), for list_things
    "partial_response": (['{"records": [{"id": 1}], "next_cursor": "abc", "total": 4}',
                          search_text("q", 3) + "\n\n[7 more results not shown: repeat the query to get the full list]"],
                         [NOT_DATA, search_text("q", 10)]),
    "forced_pagination": (['{"records": [1, 2], "next_cursor": "c2", "total": 6}',
                           'text\n[Part 1 of 3: call list_things again with the same arguments and "page": 2 for the next part]'],
                          ['{"records": [1, 2, 3, 4], "next_cursor": "c", "total": 6}', NOT_DATA]),
    "server_error": (["500 Internal Server Error: something broke", "Error: 503 Service Unavailable"],
                     [NOT_DATA, "404 Not Found: no page at this address"]),
    "rate_limit": (["429 Too Many Requests: retry after 3 s", "HTTP 429 (Retry-After: 10)"],
                   ["429 Too Many Requests", NOT_DATA]),
    "timeout": (["504 Gateway Timeout", "the call timed out after 30s"], [NOT_DATA, "500 Internal Server Error"]),
    "empty_result": (['{"records": [], "next_cursor": null, "total": 0}',
                      "No results found for 'q'. Try a shorter or different query."], [NOT_DATA, search_text("q")]),
    "schema_drift": (['{"items": [], "nextCursor": null, "totalCount": 0}', '{"records": [], "_meta": {}}',
                      search_text("q").replace("Title:", "Page title:")], [NOT_DATA, search_text("q")]),
    "validation_error": (['422 Unprocessable Entity: argument "limit" is required for this call'],
                         ['422 Unprocessable Entity: argument "name" is wrong', NOT_DATA]),
    "oversized_response": (["x" * 100 + "\n[response truncated at 100 of 900 characters: narrow it]"],
                           ["x" * 900, "x" * 400 + "\n[response truncated at 100 of 900 characters]"]),
    "outage": (["503 Service Unavailable: list_things is down for the rest of this session"], [NOT_DATA]),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_complies_on_hand_written_observations(kind):
    p, ctx = _make(kind), _ctx(LIST)
    good, bad = CASES[kind]
    assert [p.complies(text, ctx) for text in good] == [True] * len(good)
    assert [p.complies(text, ctx) for text in bad] == [False] * len(bad)


def test_partial_page_keeps_the_original_cursor_for_the_continuation():
    ctx, first_page = _ctx(LIST), json.dumps({"records": THINGS[:4], "next_cursor": "4", "total": 6})
    out = _make("partial_response").apply(LIST, ToolResult(name="list_things", content=first_page), ctx)
    head = json.loads(out.content)
    assert [r["id"] for r in head["records"]] == ["thing:000", "thing:001"] and head["total"] == 6
    rest = ctx.state.continuations[head["next_cursor"]]
    assert json.loads(rest.content) == {"records": THINGS[2:4], "next_cursor": "4", "total": 6}


def test_partial_search_exempts_the_repeated_query():
    ctx = _ctx(SEARCH)
    out = _make("partial_response").apply(SEARCH, ToolResult(name="web_search", content=search_text("acme", 10)), ctx)
    assert out.content.endswith("[5 more results not shown: repeat the query to get the full list]")
    assert "[6] " not in out.content and len(ctx.state.exempt) == 1


def test_kinds_that_do_not_fit_return_none():
    write = ToolCall(name="write_thing", arguments={"name": "a"})
    written = ToolResult(name="write_thing", content='{"id": "thing:new", "name": "a"}')
    assert not _make("validation_error").fits(write, _ctx(write))  # nothing optional to ask for
    assert not _make("oversized_response").fits(write, _ctx(write))  # no limit, no query: cannot narrow
    for kind in ("partial_response", "forced_pagination", "empty_result"):
        assert _make(kind).apply(write, written, _ctx(write)) is None
    error = ToolResult(name="list_things", content="boom", is_error=True)
    assert _make("schema_drift").apply(LIST, error, _ctx(LIST)) is None


def test_details_are_deterministic_in_the_context_key():
    p = perturbation_class("rate_limit")(retry_after=(1, 60))
    texts = {p.apply(LIST, None, _ctx(LIST, key=f"k{i}")).content for i in range(20)}
    assert len(texts) > 1
    assert p.apply(LIST, None, _ctx(LIST, "k3")).content == p.apply(LIST, None, _ctx(LIST, "k3")).content
    assert "Retry-After" in p.control_instruction(_ctx(LIST)) or "retry" in p.control_instruction(_ctx(LIST))


def test_held_back_pages_are_the_texts_of_their_records_and_cursors():
    """Pages a forced pagination or a partial response holds back are made when served: each one the JSON of the
    page's own records and next cursor, the other fields as they were (the original cursor last)."""
    import json

    from simrl.perturb.content import ForcedPagination, PartialResponse
    from simrl.perturb.taxonomy import EpisodeState, PerturbContext
    from simrl.types import ToolCall, ToolResult

    schema = {"function": {"parameters": {"properties": {"cursor": {"type": "string"}}}}}
    call = ToolCall(name="list_members", arguments={"org_id": "organization:000007"})
    records = [{"id": i, "name": f"Ann {i}", "city": "Über"} for i in range(7)]
    page = json.dumps({"records": records, "next_cursor": "orig", "total": 7})
    for perturbation, sizes in ((ForcedPagination(page_size=2), [2, 2, 2, 1]), (PartialResponse(), [4, 3])):
        ctx = PerturbContext(call, tool_schema=schema, state=EpisodeState())
        first = json.loads(perturbation.apply(call, ToolResult(name=call.name, content=page), ctx).content)
        texts, cursor = [], first["next_cursor"]
        while cursor in ctx.state.continuations:
            held = ctx.state.continuations.pop(cursor)
            assert held.tool == call.name and held.content == held.content  # made again: the same text
            texts.append(held.content)
            cursor = json.loads(held.content)["next_cursor"]
        assert cursor == "orig" and not ctx.state.continuations
        pages = [first] + [json.loads(t) for t in texts]
        assert [len(p["records"]) for p in pages] == sizes
        assert [r for p in pages for r in p["records"]] == records and all(p["total"] == 7 for p in pages)
        assert all(t == json.dumps(p, ensure_ascii=False) for t, p in zip(texts, pages[1:]))
