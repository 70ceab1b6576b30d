"""Cell-level WideSearch cases: every preprocess x metric pair against ByteDance-Seed/WideSearch.

Each row names the upstream function (``src/evaluation/metric_utils.py``) whose behaviour it checks;
the metric is called as upstream's ``metric_call`` does, response first. Cells are given as written
and read with ``read_cell`` (blank / NA spellings -> "nan", as upstream's pandas reader).
"""

from __future__ import annotations

import pytest

from simrl.reward.widesearch_cells import extract_number, norm_date, norm_str, read_cell, score_cell
from simrl.world.schema import TableColumn

# (preprocess, metric, response, target, expected score, upstream function checked)
CASES = [
    # none: the cell as read
    ("none", "exact_match", "Port Alden", "PORT ALDEN", 1.0, "exact_match ignores case"),
    ("none", "exact_match", "Port  Alden", "Port Alden", 0.0, "exact_match keeps inner spaces"),
    ("none", "in_match", "Port Alden", "Port Alden City", 1.0, "in_match: response in target"),
    ("none", "in_match", "Port Alden City", "Port Alden", 0.0, "in_match: not target in response"),
    ("none", "in_match", "", "Port Alden", 0.0, "in_match: a blank cell reads as 'nan'"),
    ("none", "url_match", "https://acme.example/about", "http://acme.example", 1.0, "url_match: netloc only"),
    ("none", "url_match", "https://www.acme.example", "https://acme.example", 0.0, "url_match: www kept"),
    ("none", "url_match", "https://ACME.example", "https://acme.example", 0.0, "url_match: host case kept"),
    ("none", "url_match", "acme.example", "https://acme.example", 0.0, "url_match: no scheme, no URL"),
    ("none", "url_match", "n/a", "unknown", 1.0, "url_match: no URL on either side"),
    ("none", "url_match", "see https://b.example and https://a.example", "https://a.example https://b.example",
     1.0, "url_match: sets of hosts"),
    ("none", "number_near", "5%", "0.05", 1.0, "number_near reads 5% as 0.05"),
    ("none", "number_near", "1e3", "1000", 1.0, "number_near uses float()"),
    ("none", "number_near", "unknown", "unknown", 1.0, "number_near: both non-numeric and equal"),
    ("none", "number_near", "NULL", "NULL", 0.0, "number_near: a NULL cell reads as 'nan' (NaN)"),
    ("none", "number_near", "unknown", "n.a.", 0.0, "number_near: both non-numeric, texts differ"),
    ("none", "number_near", "", "", 0.0, "number_near: 'nan' reads as NaN, never near"),
    ("none", "date_near", "March 2020", "2020-03-31", 1.0, "date_near: dateparser, day 1 preferred"),
    ("none", "date_near", "2020-02-02", "2020-01-01", 0.0, "date_near: 32 days apart"),
    ("none", "date_near", "sometime", "unclear", 1.0, "date_near: neither parses"),
    ("none", "date_near", "sometime", "2020-01-01", 0.0, "date_near: one side parses"),
    # norm_str: lowercase, strip, drop spaces and '*'
    ("norm_str", "exact_match", "**Blue  Owl**", "blue owl", 1.0, "norm_str + exact_match"),
    ("norm_str", "exact_match", "Blue\tOwl", "blue owl", 0.0, "norm_str keeps tabs"),
    ("norm_str", "in_match", "Alden", "Port Alden", 1.0, "norm_str + in_match"),
    ("norm_str", "in_match", "Port Alden City", "Port Alden", 0.0, "norm_str + in_match direction"),
    ("norm_str", "url_match", "HTTPS://acme.example", "https://acme.example", 1.0, "norm_str lowercases, then url_match"),
    ("norm_str", "number_near", "1 000", "1000", 1.0, "norm_str then number_near"),
    ("norm_str", "date_near", "March 4, 1987", "1987-03-04", 1.0, "norm_str ('march4,1987') + date_near"),
    # extract_number: the first number as written, "NULL" when none
    ("extract_number", "exact_match", "1990.0", "1990", 0.0, "extract_number keeps '1990.0'"),
    ("extract_number", "exact_match", "1,990 AD", "1990", 1.0, "extract_number drops commas"),
    ("extract_number", "exact_match", "unknown", "n/a", 1.0, "extract_number: 'NULL' == 'NULL'"),
    ("extract_number", "in_match", "19", "1990", 1.0, "extract_number + in_match"),
    ("extract_number", "url_match", "12", "34", 1.0, "extract_number + url_match (no URLs)"),
    ("extract_number", "number_near", "1990.0", "1990", 1.0, "extract_number + number_near"),
    ("extract_number", "number_near", "about 5 %", "0.05", 0.0, "extract_number drops the spaced %"),
    ("extract_number", "number_near", "12.5%", "0.125", 1.0, "extract_number keeps % for number_near"),
    ("extract_number", "number_near", "1101", "1000", 0.0, "number_near: 10% bound"),
    ("extract_number", "number_near", "-", "?", 1.0, "number_near: NULL vs NULL"),
    ("extract_number", "date_near", "1990", "1990-12-31", 1.0, "extract_number keeps '1990' of a date"),
    # norm_date: YYYY-MM-DD when it parses, else the text unchanged
    ("norm_date", "exact_match", "March 4, 1987", "1987-03-04", 1.0, "norm_date + exact_match"),
    ("norm_date", "exact_match", "March 1987", "1987-03-01", 1.0, "norm_date: day 1 preferred"),
    ("norm_date", "exact_match", "Early 1987", "early 1987", 1.0, "norm_date: unparsed text kept"),
    ("norm_date", "in_match", "1987-03", "1987-03-04", 0.0, "norm_date rewrites '1987-03' to '1987-03-01'"),
    ("norm_date", "url_match", "https://a.example", "https://a.example", 1.0, "norm_date + url_match"),
    ("norm_date", "number_near", "unknown", "unknown", 1.0, "norm_date + number_near, equal text"),
    ("norm_date", "date_near", "February 1, 2020", "2020-01-01", 1.0, "norm_date + date_near, 31 days"),
    ("norm_date", "date_near", "2019-11-30", "2020-01-01", 0.0, "norm_date + date_near, 32 days"),
]


@pytest.mark.parametrize(("pre", "metric", "response", "target", "expected", "checks"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_cell_matches_upstream(pre: str, metric: str, response: str, target: str, expected: float,
                               checks: str) -> None:
    column = TableColumn(name="x", preprocess=pre, metric=metric, criterion=0.1 if metric == "number_near" else None)
    assert score_cell(column, read_cell(response), read_cell(target)) == expected, checks


def test_every_pair_is_covered() -> None:
    pairs = {(c[0], c[1]) for c in CASES}
    assert pairs == {(p, m) for p in ("none", "norm_str", "extract_number", "norm_date")
                     for m in ("exact_match", "in_match", "url_match", "number_near", "date_near")}


def test_preprocess_steps() -> None:
    # upstream norm_str / extract_number / norm_date return strings
    assert norm_str("  Blue Owl *Ltd*\n") == "blueowlltd"
    assert [extract_number(s) for s in ("1,234 staff", "-3.5 m", "+7", "COVID-19", "v1.2.3", ".5", "5.", "none")] == [
        "1234", "-3.5", "+7", "-19", "1.2", ".5", "5.", "NULL"]
    assert [norm_date(s) for s in ("1987-03-04", "4 March 1987", "1990", "no date")] == [
        "1987-03-04", "1987-03-04", "1990-01-01", "no date"]
    assert [read_cell(s) for s in ("  x ", "", "NA", "null", "None", "-")] == ["x", "nan", "nan", "nan", "nan", "-"]


def test_alias_match_stands_in_for_llm_judge() -> None:
    col = TableColumn(name="city", preprocess="norm_str", metric="alias_match")
    assert score_cell(col, "PORT VARN", "Port Varn") == 1.0
    assert score_cell(col, "varn", "Port Varn", ["Varn"]) == 1.0
    assert score_cell(col, "Varn City", "Port Varn", ["Varn"]) == 0.0


def test_number_near_criterion() -> None:
    default = TableColumn(name="x", preprocess="extract_number", metric="number_near")
    assert score_cell(default, "110", "100") == 1.0 and score_cell(default, "111", "100") == 0.0
    exact = TableColumn(name="x", preprocess="extract_number", metric="number_near", criterion=0.0)
    assert score_cell(exact, "0", "0") == 1.0 and score_cell(exact, "1", "0") == 0.0
