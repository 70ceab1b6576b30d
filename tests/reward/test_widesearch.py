"""WideSearch table metrics: parsing, preprocess, metrics, row join and multi-trial aggregation."""

from __future__ import annotations

from fractions import Fraction

import pytest

from simrl.reward import TableScore, aggregate_trials, parse_markdown_table, score_table
from simrl.reward.widesearch import extract_number, norm_column, norm_date, norm_str, score_cell
from simrl.world.schema import TableColumn, TableGold

COLUMNS = [
    TableColumn(name="Name", preprocess="norm_str", metric="exact_match"),
    TableColumn(name="Founded", preprocess="norm_date", metric="date_near"),
    TableColumn(name="Employees", preprocess="extract_number", metric="number_near", criterion=0.1),
]
GOLD = TableGold(
    columns=COLUMNS,
    unique_columns=["Name"],
    rows=[
        {"Name": "Acme Corp", "Founded": "1987-03-04", "Employees": "1,200"},
        {"Name": "Blue Owl Ltd", "Founded": "2001-06-15", "Employees": "350"},
        {"Name": "Cobalt Works", "Founded": "1995-11-30", "Employees": "80"},
    ],
)
PERFECT = """| Name | Founded | Employees |
|---|---|---|
| Acme Corp | 1987-03-04 | 1200 |
| Blue Owl Ltd | 2001-06-15 | 350 |
| Cobalt Works | 1995-11-30 | 80 |"""


def approx(x: Fraction) -> object:
    return pytest.approx(float(x), abs=1e-12)


def test_hand_computed_example() -> None:
    response = """Here is what I found:

```markdown
| Employees | name | Founded | Notes |
|:---|---|---:|---|
| 1250 | acme corp | March 4, 1987 | ok |
| 500 | Blue Owl Ltd | 15 June 2001 | staff count wrong |
| 10 | Dynamo Inc | 2010-01-01 | spurious |
| 7 | Ember Labs | 2012-02-02 | spurious |
| 5 | ACME  Corp | 1990-01-01 | duplicate of row 1, dropped |
```
"""
    # After dropping the duplicate "ACME  Corp" (same norm_str key as "acme corp"): 4 predicted rows,
    # 3 gold rows, 3 columns. Joined rows: Acme (3 hits: 1250 within 10% of 1200, same date) and
    # Blue Owl (2 hits: |500 - 350| = 150 > 35). Row TP = 1, item TP = 5.
    #   row P = 1/4, row R = 1/3, row F1 = 2 * (1/12) / (7/12) = 2/7
    #   item P = 5/12, item R = 5/9, item F1 = 2 * (25/108) / (35/36) = 10/21
    s = score_table(response, GOLD)
    assert (s.n_pred_rows, s.n_gold_rows, s.success) == (4, 3, False)
    assert s.row_precision == approx(Fraction(1, 4))
    assert s.row_recall == approx(Fraction(1, 3))
    assert s.row_f1 == approx(Fraction(2, 7))
    assert s.item_precision == approx(Fraction(5, 12))
    assert s.item_recall == approx(Fraction(5, 9))
    assert s.item_f1 == approx(Fraction(10, 21))


def test_perfect_table_is_success() -> None:
    s = score_table("Answer:\n" + PERFECT + "\nThat is all.", GOLD)
    assert s.success
    assert (s.row_f1, s.item_f1, s.n_pred_rows, s.n_gold_rows) == (1.0, 1.0, 3, 3)


def test_no_table_scores_zero() -> None:
    s = score_table("I could not find the data.", GOLD)
    assert s == TableScore(success=False, row_precision=0, row_recall=0, row_f1=0, item_precision=0,
                           item_recall=0, item_f1=0, n_pred_rows=0, n_gold_rows=3)


def test_last_table_is_used() -> None:
    draft = "| Name | Founded | Employees |\n|---|---|---|\n| Wrong Co | 1900-01-01 | 1 |"
    assert score_table(draft + "\n\nFinal:\n\n" + PERFECT, GOLD).success
    s = score_table(PERFECT + "\n\nOn second thought:\n\n" + draft, GOLD)
    assert (s.n_pred_rows, s.row_recall, s.item_recall) == (1, 0.0, 0.0)


def test_column_name_normalisation() -> None:
    gold = TableGold(columns=[TableColumn(name="Company Name"), TableColumn(name="Founded Date")],
                     unique_columns=["Company Name"], rows=[{"Company Name": "Acme", "Founded Date": "1987"}])
    assert norm_column(" Founded Date ") == norm_column("founded  date") == "foundeddate"
    assert score_table("| company name | FOUNDED date |\n|--|--|\n| Acme | 1987 |", gold).success
    assert score_table("| CompanyName | FoundedDate |\n|--|--|\n| Acme | 1987 |", gold).success


def test_missing_required_column_reads_as_empty() -> None:
    # Employees column missing: each joined row gets 2 of 3 cells; no row is fully correct.
    s = score_table("| Name | Founded |\n|---|---|\n| Acme Corp | 1987-03-04 |", GOLD)
    assert (s.row_precision, s.item_precision, s.item_recall) == (0.0, pytest.approx(2 / 3), pytest.approx(2 / 9))


def test_duplicate_gold_rows_are_dropped() -> None:
    gold = TableGold(columns=[TableColumn(name="Name")], unique_columns=["Name"],
                     rows=[{"Name": "Acme"}, {"Name": "ACME"}])
    s = score_table("| Name |\n|---|\n| acme |", gold)
    assert (s.n_gold_rows, s.success) == (1, True)


def test_parse_markdown_table_variants() -> None:
    assert parse_markdown_table("a | b\n--- | :---:\n1 | 2\n3\n\ntext") == (["a", "b"], [["1", "2"]])
    assert parse_markdown_table("| a | b |\n|---|---|\n| x \\| y | 2 | extra |\n| 1 |") == (
        ["a", "b"], [["x | y", "2"], ["1", ""]])
    assert parse_markdown_table("| a |\n|---|\n|   |\n| z |") == (["a"], [["z"]])
    assert parse_markdown_table("| not | a table |\nno separator") is None
    assert parse_markdown_table("") is None


def test_preprocess_functions() -> None:
    assert norm_str("  Blue\tOwl *Ltd*\n") == "blueowlltd"
    assert extract_number("1,234 employees") == 1234.0
    assert extract_number("revenue -3.5 million") == -3.5
    assert extract_number("12,345,678.9") == 12345678.9
    assert extract_number("COVID-19") == 19.0
    assert extract_number("none") is None
    assert norm_date("1987-03-04") == "1987-03-04"
    assert norm_date("March 4, 1987") == "1987-03-04"
    assert norm_date("Founded on Mar. 4th, 1987") == "1987-03-04"
    assert norm_date("4 March 1987") == "1987-03-04"
    assert norm_date("1987/03/04") == "1987-03-04"
    assert norm_date("03/04/1987") == "1987-03-04"  # US month/day
    assert norm_date("13/04/1987") == "13/04/1987"  # month 13 does not parse: norm_str of the text
    assert norm_date("Early 1987 *approx*") == "early1987approx"
    assert score_cell(TableColumn(name="x", preprocess="none"), "  A b ", "A b") == 1.0
    assert score_cell(TableColumn(name="x", preprocess="none"), "a b", "A b") == 0.0


def test_exact_match() -> None:
    col = TableColumn(name="x", preprocess="norm_str", metric="exact_match")
    assert score_cell(col, "Blue **Owl**", "blue owl") == 1.0
    assert score_cell(col, "Blue Owls", "blue owl") == 0.0
    num = TableColumn(name="x", preprocess="extract_number", metric="exact_match")
    assert score_cell(num, "1,000 people", "1000") == 1.0
    assert score_cell(num, "unknown", "n/a") == 0.0  # no number on either side is no match


def test_number_near_boundary() -> None:
    col = TableColumn(name="x", preprocess="extract_number", metric="number_near", criterion=0.1)
    assert score_cell(col, "1100", "1000") == 1.0  # exactly at |t| * 0.1
    assert score_cell(col, "900", "1000") == 1.0
    assert score_cell(col, "1100.5", "1000") == 0.0
    assert score_cell(col, "1.21", "1.1") == 1.0  # 0.11 <= 0.11 despite float rounding
    assert score_cell(col, "n/a", "1000") == 0.0
    default = TableColumn(name="x", preprocess="extract_number", metric="number_near")
    assert score_cell(default, "110", "100") == 1.0 and score_cell(default, "111", "100") == 0.0
    exact = TableColumn(name="x", preprocess="extract_number", metric="number_near", criterion=0.0)
    assert score_cell(exact, "0", "0") == 1.0 and score_cell(exact, "1", "0") == 0.0


def test_date_near_boundary() -> None:
    col = TableColumn(name="x", preprocess="norm_date", metric="date_near")
    assert score_cell(col, "February 1, 2020", "2020-01-01") == 1.0  # 31 days
    assert score_cell(col, "2020-02-02", "2020-01-01") == 0.0  # 32 days
    assert score_cell(col, "2019-12-01", "2020-01-01") == 1.0  # 31 days before
    assert score_cell(col, "sometime in 2020", "2020-01-01") == 0.0
    week = TableColumn(name="x", preprocess="norm_date", metric="date_near", criterion=7)
    assert score_cell(week, "2020-01-08", "2020-01-01") == 1.0
    assert score_cell(week, "2020-01-09", "2020-01-01") == 0.0


def test_url_match() -> None:
    col = TableColumn(name="x", preprocess="none", metric="url_match")
    assert score_cell(col, "https://www.acme.example/about", "http://acme.example/") == 1.0
    assert score_cell(col, "acme.example/page", "https://ACME.example") == 1.0
    assert score_cell(col, "https://shop.acme.example", "https://acme.example") == 0.0
    assert score_cell(col, "", "") == 0.0


def test_in_match() -> None:
    col = TableColumn(name="x", preprocess="norm_str", metric="in_match")
    assert score_cell(col, "Port Varn, Eastmark", "port varn") == 1.0
    assert score_cell(col, "Varn", "Port Varn") == 0.0  # gold must be inside the response


def test_alias_match_cell_and_join() -> None:
    cols = [TableColumn(name="Person", metric="alias_match"), TableColumn(name="City", metric="alias_match")]
    gold = TableGold(
        columns=cols, unique_columns=["Person"],
        rows=[{"Person": "Robert Smith", "City": "Port Varn"}, {"Person": "Ann Lee", "City": "Oslet"}],
        aliases={"Person": {"Robert Smith": ["Bob Smith"]}, "city": {"Port Varn": ["Varn"]}},
    )
    assert score_cell(cols[1], "varn", "Port Varn", ["Varn"]) == 1.0
    assert score_cell(cols[1], "Varn City", "Port Varn", ["Varn"]) == 0.0
    s = score_table("| Person | City |\n|---|---|\n| BOB SMITH | Varn |\n| Ann Lee | Oslet |", gold)
    assert s.success
    # "Bob Smith" and "Robert Smith" resolve to one gold row: the second is a duplicate and is dropped.
    s = score_table("| Person | City |\n|---|---|\n| Bob Smith | Varn |\n| Robert Smith | Nowhere |", gold)
    assert (s.n_pred_rows, s.row_precision, s.row_recall, s.item_recall) == (1, 1.0, 0.5, 0.5)


def test_unique_columns_must_be_columns() -> None:
    bad = TableGold(columns=[TableColumn(name="Name")], unique_columns=["Id"], rows=[])
    with pytest.raises(ValueError, match="unique_columns"):
        score_table(PERFECT, bad)


def _ts(value: float, success: bool = False) -> TableScore:
    return TableScore(success=success, row_precision=value, row_recall=value, row_f1=value,
                      item_precision=value, item_recall=value, item_f1=value, n_pred_rows=1, n_gold_rows=1)


def test_aggregate_trials_hand_computed() -> None:
    # Instance 1: values 0.5, 1.0 (success), 0.0 -> avg 0.5, max 1.0; success avg 1/3, max 1.
    # Instance 2: values 0.2, 0.4, 0.6 -> avg 0.4, max 0.6; success avg 0, max 0.
    # Over instances: avg@3 = (0.5 + 0.4) / 2 = 0.45, pass@3 = (1.0 + 0.6) / 2 = 0.8;
    # success avg@3 = (1/3 + 0) / 2 = 1/6, pass@3 = (1 + 0) / 2 = 0.5.
    out = aggregate_trials([[_ts(0.5), _ts(1.0, True), _ts(0.0)], [_ts(0.2), _ts(0.4), _ts(0.6)]])
    metrics = ["row_precision", "row_recall", "row_f1", "item_precision", "item_recall", "item_f1"]
    assert set(out) == {f"{kind}@3/{m}" for kind in ("avg", "pass") for m in [*metrics, "success"]}
    for m in metrics:
        assert out[f"avg@3/{m}"] == pytest.approx(0.45)
        assert out[f"pass@3/{m}"] == pytest.approx(0.8)
    assert out["avg@3/success"] == pytest.approx(1 / 6)
    assert out["pass@3/success"] == pytest.approx(0.5)


def test_aggregate_trials_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        aggregate_trials([])
    with pytest.raises(ValueError, match="same number of trials"):
        aggregate_trials([[_ts(1.0)], [_ts(1.0), _ts(0.0)]])
    with pytest.raises(ValueError, match="instance 1 has no trials"):
        aggregate_trials([[_ts(1.0)], []])
