"""Rule-based fidelity scorers, the LLM judge (against a real local endpoint), and baselines vs the oracle."""

from __future__ import annotations

import asyncio
import json

import pytest

from simrl.fidelity.judge import Judge, JudgeError, judge_messages, normalise, parse_judge
from simrl.fidelity.rules import facts, layout, status_class
from simrl.fidelity.scoring import DIMENSIONS, score_prediction, world_facts
from simrl.testing.openai_stub import StubEndpoint
from simrl.world.schema import SimulationInstruction
from tests.wm import trajectory_fixtures as fx

real_trajectories = fx.real_trajectories  # the session fixture

RESULTS = """A search for 'Lowery-Vaughn Group' found 2 results:

[1] https://www.tiny.example/wiki/Lowery-Vaughn_Group
Title: Lowery-Vaughn Group
Snippet: ...founded on April 3, 1938 by Erin Robinson. It is headquartered in East Costastad.
Date: N/A

[2] https://www.tiny.example/news/2009-04-26/Lowery-Vaughn_Group_launches_Stop_Meridian_5
Title: Lowery-Vaughn Group launches Stop Meridian 5
Snippet: April 26, 2009 Lowery-Vaughn Group released Stop Meridian 5 on April 26, 2009.
Date: 2009-04-26"""
PAGE = """Title: Lowery-Vaughn Group

URL Source: https://www.tiny.example/wiki/Lowery-Vaughn_Group

Markdown Content:
# Lowery-Vaughn Group

| Founded | April 3, 1938 |
| Employees | 98 |

Lowery-Vaughn Group is a banking company founded on April 3, 1938 by Erin Robinson."""
RECORD = json.dumps({"id": "organization:000018", "type": "organization", "name": "Leblanc Inc", "employees": 678,
                     "founded": "1969-09-30", "industry": "film", "headquartered_in": "city:000013"})
PAGE_JSON = json.dumps({"records": [{"id": "organization:000018", "type": "organization", "name": "Leblanc Inc",
                                     "match": "exact"}], "total": 1})
BFCL = json.dumps({"matching_lines": ["Year2024 This is the final report content including budget analysis."]})
TEXT = "total 3\ndrwxr-xr-x docs\n-rw-r--r-- notes.txt 120 bytes"
CASES = [(RESULTS, "search"), (PAGE, "search"), (RECORD, "mcp"), (PAGE_JSON, "mcp"), (BFCL, "bfcl"),
         ("None", "bfcl"), (TEXT, "terminal"), ("Error executing tool get_record: no record with id 'x:000001'", "mcp"),
         ("Successfully wrote to /tmp/work/notes.txt", "mcp"),  # the filesystem MCP server answers in text
         ("今天北京天气晴朗，气温二十度。", "search")]


@pytest.mark.parametrize(("real", "domain"), CASES)
def test_a_perfect_prediction_scores_100_everywhere(real, domain):
    scores = score_prediction(real, real, domain=domain, history=[RESULTS, RECORD])
    assert {d: getattr(scores, d) for d in DIMENSIONS} == dict.fromkeys(DIMENSIONS, 100.0)
    assert scores.overall == 100.0


@pytest.mark.parametrize(("text", "domain", "status"), [
    (RESULTS, "search", "success"), (PAGE, "search", "success"),
    ("No results found for 'zzz'. Try a shorter or different query.", "search", "empty"),
    ("404 Not Found: https://x.example/a (no page at this address)", "search", "error"),
    (RESULTS.split("\n\n[2]")[0] + "\n\n[1 more results not shown: repeat the query to get the full list]",
     "search", "partial"),
    (RECORD, "mcp", "success"), ('{"records": [], "next_cursor": null, "total": 0}', "mcp", "empty"),
    ('{"records": [{"id": "a:000001"}], "next_cursor": "abc", "total": 5}', "mcp", "partial"),
    ("Error executing tool get_record: no record with id 'person:9'", "mcp", "error"),
    ("503 Service Unavailable: the record service is temporarily unavailable", "mcp", "error"),
    ("None", "bfcl", "empty"), ('{"error": "No such file"}', "bfcl", "error"), (BFCL, "bfcl", "success"),
    ('{"matching_lines": []}', "bfcl", "empty"), ("Error during execution: bad arg", "bfcl", "error"),
])
def test_status_classes(text, domain, status):
    assert status_class(text, domain) == status


def test_facts_normalise_dates_ids_urls_and_json_fields():
    found = facts(RECORD)
    assert {"organization:000018", "city:000013", "1969-09-30", "678", "employees=678", "name=leblanc inc"} <= found
    assert "1938-04-03" in facts(PAGE) and "https://www.tiny.example/wiki/lowery-vaughn_group" in facts(PAGE)
    assert "1" not in facts(RESULTS) and "2" in facts(RESULTS)  # [k] indexes are not facts; "found 2" is


def test_a_changed_fact_lowers_factuality_only():
    changed = RECORD.replace("1969-09-30", "1971-02-11").replace("678", "679")
    scores = score_prediction(changed, RECORD, domain="mcp")
    assert scores.factuality < 85 and scores.format == 100 and scores.realism == 100
    page = score_prediction(PAGE.replace("1938", "1952"), PAGE, domain="search")
    assert page.factuality < 90 and page.format == 100


def test_a_broken_layout_lowers_format():
    no_titles = "\n".join(ln for ln in RESULTS.splitlines() if not ln.startswith("Title:"))
    assert layout(no_titles, "search")[0] == "search_results"
    assert 50 < score_prediction(no_titles, RESULTS, domain="search").format < 100  # kind right, 2 of 9 rules broken
    prose = "Lowery-Vaughn Group was founded on April 3, 1938 by Erin Robinson."
    assert score_prediction(prose, RESULTS, domain="search").format == 0
    dropped_keys = json.dumps({k: v for k, v in json.loads(RECORD).items() if k in ("id", "name")})
    assert 50 < score_prediction(dropped_keys, RECORD, domain="mcp").format < 100
    assert score_prediction("Error: no record", RECORD, domain="mcp").format < 50  # kind and error line wrong


def test_a_wrong_status_class_scores_zero_realism():
    error = "Error executing tool get_record: no record with id 'organization:000018'"
    assert score_prediction(error, RECORD, domain="mcp").realism == 0
    assert score_prediction("None", BFCL, domain="bfcl").realism == 0
    assert score_prediction("404 Not Found: https://x.example/a", error, domain="mcp").realism == 50  # other family
    partial = json.dumps({"records": [{"id": "a:000001"}], "next_cursor": "abc", "total": 5})
    full = json.dumps({"records": [{"id": "a:000001"}], "next_cursor": None, "total": 1})
    assert score_prediction(full, partial, domain="mcp").realism == 0
    chatter = "Sure! Here is the record you asked for: Leblanc Inc, 678 employees."  # free text, status "success"
    assert status_class(chatter, "mcp") == "success" and score_prediction(chatter, RECORD, domain="mcp").realism == 0
    assert score_prediction(TEXT + "\nmore", TEXT, domain="terminal").realism == 100  # text where the tool prints text


def test_contradicting_an_earlier_turn_lowers_consistency():
    renamed = RESULTS.replace("Title: Lowery-Vaughn Group\n", "Title: Lowery Vaughn Holdings\n")
    current = "A search for 'Erin Robinson' found 1 results:\n\n[1] https://www.tiny.example/wiki/Lowery-Vaughn_Group\n" \
              "Title: Lowery-Vaughn Group\nSnippet: ...\nDate: N/A"
    ok = score_prediction(current, current, domain="search", history=[RESULTS])
    bad = score_prediction(current.replace("Title: Lowery-Vaughn Group", "Title: Lowery Vaughn Holdings"), current,
                           domain="search", history=[RESULTS])
    assert ok.consistency == 100 and bad.consistency == 0
    # the real observation itself shows a new title: that is the state now, and the prediction agrees with it
    assert score_prediction(current, current, domain="search", history=[renamed]).consistency == 100
    # records: a field that changed without a write is a contradiction; a write's new value is expected
    stale = RECORD.replace('"industry": "film"', '"industry": "banking"')
    assert score_prediction(stale, RECORD, domain="mcp", history=[RECORD]).consistency < 100
    written = RECORD.replace("678", "700")
    assert score_prediction(written, written, domain="mcp", history=[RECORD]).consistency == 100
    assert score_prediction(RECORD, written, domain="mcp", history=[RECORD]).consistency < 100


def test_world_facts_count_where_the_real_observation_shows_them():
    instruction = SimulationInstruction(task_id="t", target_query="When was Lowery-Vaughn Group founded?",
                                        reference_answer="April 3, 1938",
                                        facts=["Lowery-Vaughn Group was founded on April 3, 1938."], pages=[])
    world = world_facts(instruction)
    assert "1938-04-03" in world
    wrong = PAGE.replace("April 3, 1938", "May 9, 1941")
    assert score_prediction(wrong, PAGE, domain="search", world=world).factuality < \
        score_prediction(wrong, PAGE, domain="search").factuality
    assert score_prediction(PAGE, PAGE, domain="search", world=world).factuality == 100


def test_text_in_any_script_is_compared_word_by_word():
    for real, other in [("今天北京天气晴朗，气温二十度。", "上海明日有雨，请带伞出门。"),
                        ("Ошибка доступа: файл защищён", "Привет мир, как дела сегодня"),
                        ("Zoë Ångström moved to Łódź", "Björn Ærø stayed in Gdańsk")]:
        assert score_prediction(real, real, domain="os").factuality == 100
        assert score_prediction(other, real, domain="os").factuality < 20, (real, other)
    text = "Successfully wrote to /tmp/work/notes.txt"
    assert score_prediction("Done.", text, domain="mcp").factuality < 20
    assert score_prediction(text, text, domain="mcp").format == 100  # free text where the real tool prints text


def test_json_escapes_are_read_as_the_characters_they_stand_for():
    record = {"id": "person:000001", "name": "Zoë Ångström", "city": "北京", "bio": "line one\nline two"}
    escaped, plain = json.dumps(record), json.dumps(record, ensure_ascii=False)
    assert escaped != plain and score_prediction(escaped, plain, domain="mcp").factuality == 100
    assert score_prediction(plain, escaped, domain="bfcl").factuality == 100


def test_pathological_predictions_are_scored_not_raised():
    for pred in ["[" * 100_000, "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000, "[" * 900 + "]" * 900]:
        scores = score_prediction(pred, RECORD, domain="mcp", history=[RECORD])
        assert scores.overall < 40
    assert status_class('{"error": null, "result": 5}', "bfcl") == "success"
    assert status_class('{"error": "No such file"}', "bfcl") == "error"


def test_a_truncated_prediction_lowers_quality():
    half = RESULTS.split("\n\n[2]")[0].replace("found 2", "found 1")
    scores = score_prediction(half, RESULTS, domain="search")
    assert scores.quality < 70 and scores.format == 100


# -- the LLM judge -----------------------------------------------------------------------------------------
def test_parse_judge_reads_json_and_pairs_and_rejects_incomplete():
    assert parse_judge('{"format": 5, "factuality": 4, "consistency": 3, "realism": 2, "quality": 1}')[0] == \
        {"format": 5, "factuality": 4, "consistency": 3, "realism": 2, "quality": 1}
    assert parse_judge("Format: 4\nFactuality: 4\nConsistency: 5\nRealism: 3\nQuality: 2")[0]["realism"] == 3
    assert parse_judge('{"format": 6, "factuality": 4, "consistency": 3, "realism": 2, "quality": 1}') is None
    assert parse_judge('{"format": 5, "factuality": 4}') is None and parse_judge("") is None
    assert [normalise(x) for x in (1, 2, 5)] == [0.0, 25.0, 100.0]


def _verdict(scores: list[int]) -> str:
    return "<think>compare</think>" + json.dumps(dict(zip(DIMENSIONS, scores)) | {"reason": "close"})


def test_judge_against_a_local_endpoint_retries_5xx_and_re_asks_unparseable_answers():
    answers = iter(["I think it is fine.", _verdict([5, 4, 3, 2, 1])])
    with StubEndpoint(lambda req: next(answers)) as ep:
        judge = Judge(ep.url, "judge-model", max_retries=3)
        messages = judge_messages(domain="mcp", history=[("### Turn 1", RECORD)], action="### Turn 2",
                                  real=RECORD, predicted=RECORD.replace("678", "679"))
        ep.fail_next(1, 503)
        verdict = asyncio.run(judge.score(messages))
    assert verdict.raw == dict(zip(DIMENSIONS, [5, 4, 3, 2, 1]))
    assert verdict.scores["format"] == 100 and verdict.scores["quality"] == 0 and verdict.overall == 50
    assert verdict.attempts == 2 and judge.stats == {"requests": 2, "unparsed": 1, "failures": 0}
    assert judge.backend.retries == 1 and len(ep.requests) == 3  # the 503 was retried by the SDK
    sent = ep.requests[-1]
    assert sent["model"] == "judge-model" and sent["temperature"] == 0
    assert "PREDICTED observation:" in sent["messages"][1]["content"] and '"employees": 679' in \
        sent["messages"][1]["content"]


def test_judge_gives_up_after_its_retries():
    with StubEndpoint(lambda req: "no scores here") as ep:
        judge = Judge(ep.url, "judge-model", max_retries=1)
        with pytest.raises(JudgeError, match="no five 1-5 scores"):
            asyncio.run(judge.score(judge_messages(domain="bfcl", history=[], action="a", real="x", predicted="y")))
        assert len(ep.requests) == 2
        ep.fail_next(1, 400)
        with pytest.raises(JudgeError, match="HTTP 400"):
            asyncio.run(judge.score(judge_messages(domain="bfcl", history=[], action="a", real="x", predicted="y")))
        assert len(ep.requests) == 3  # a bad request is not retried


# -- baselines below the oracle on real trajectories ---------------------------------------------------------
def test_baselines_score_below_the_oracle_on_real_trajectories(real_trajectories, tmp_path):
    from simrl.fidelity.evaluate import EvalConfig, run_eval
    from simrl.fidelity.report import summarise
    from simrl.wm.transitions import load_transitions

    world = real_trajectories["world"]
    trs = [t for env in ("search", "mcp-world") for t in load_transitions(real_trajectories[env], world=world)]
    config = EvalConfig(backends=["oracle"], world=world)
    rows = asyncio.run(run_eval(trs, config, tmp_path))
    scores = summarise(rows, config.names)
    for domain in ("search", "mcp"):
        oracle = scores["oracle"]["by_domain"][domain]["overall"]
        assert oracle > scores["repeat-previous"]["by_domain"][domain]["overall"] + 15
        assert oracle > scores["empty"]["by_domain"][domain]["overall"] + 30
    assert scores["oracle"]["by_domain"]["search"]["overall"] == 100  # the oracle runs the real search tools
    assert scores["oracle"]["n"] == len(trs) and len(rows) == 3 * len(trs)


def test_the_scorer_modules_doctests_hold():
    import doctest
    import importlib

    for name in ("simrl.fidelity.rules", "simrl.fidelity.scoring", "simrl.fidelity.judge", "simrl.wm.prompts"):
        assert doctest.testmod(importlib.import_module(name)).failed == 0, name
