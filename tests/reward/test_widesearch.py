"""WideSearch table metrics: parsing, preprocess, metrics, row join and multi-trial aggregation."""

from __future__ import annotations

from fractions import Fraction

import pytest

from simrl.reward import TableScore, aggregate_trials, parse_markdown_table, score_table
from simrl.reward.widesearch import norm_column
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
| Employees | name | Founded |
|:---|---|---:|
| 1250 | acme corp | March 4, 1987 |
| 500 | Blue Owl Ltd | 15 June 2001 |
| 10 | Dynamo Inc | 2010-01-01 |
| 7 | Ember Labs | 2012-02-02 |
| 5 | ACME  Corp | 1990-01-01 |
```
"""
    # "ACME  Corp" aligns to "Acme Corp" like "acme corp" does: a duplicate key, dropped. 4 predicted
    # rows, 3 gold rows, 3 columns. Joined rows: Acme (3 hits: 1250 within 10% of 1200, same date) and
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


ZERO = TableScore(success=False, row_precision=0, row_recall=0, row_f1=0, item_precision=0, item_recall=0,
                  item_f1=0, n_pred_rows=0, n_gold_rows=3)


@pytest.mark.parametrize("response", [
    "I could not find the data.",
    "| Name | Founded |\n|---|---|\n| Acme Corp | 1987-03-04 |",  # a required column missing
    PERFECT.replace("| Employees |", "| Employees | Notes |", 1),  # an extra column
    PERFECT.replace("Cobalt Works |", "Cobalt | Works |"),  # a row wider than the header
    "```markdown\n```\n" + PERFECT,  # an empty markdown block is the table
])
def test_unreadable_or_mis_columned_table_scores_zero(response: str) -> None:
    # evaluate_single_query: no dataframe, required_columns != response columns, or a read error -> all 0
    assert score_table(response, GOLD) == ZERO


def test_first_table_is_used() -> None:
    # extract_dataframe: the first ```markdown block, else the first run of lines from the first "|"
    draft = "| Name | Founded | Employees |\n|---|---|---|\n| Wrong Co | 1900-01-01 | 1 |"
    assert score_table(PERFECT + "\n\nOn second thought:\n\n" + draft, GOLD).success
    s = score_table(draft + "\n\nFinal:\n\n" + PERFECT, GOLD)
    assert (s.n_pred_rows, s.row_recall) == (1, 0.0)
    assert score_table(draft + "\n\n```markdown\n" + PERFECT + "\n```", GOLD).success


def test_column_name_normalisation() -> None:
    gold = TableGold(columns=[TableColumn(name="Company Name"), TableColumn(name="Founded Date")],
                     unique_columns=["Company Name"], rows=[{"Company Name": "Acme", "Founded Date": "1987"}])
    assert norm_column(" Founded Date ") == norm_column("founded  date") == "foundeddate"
    assert score_table("| company name | FOUNDED date |\n|--|--|\n| Acme | 1987 |", gold).success
    assert score_table("| FoundedDate | CompanyName |\n|--|--|\n| 1987 | Acme |", gold).success


def test_duplicate_missing_and_extra_rows() -> None:
    # Acme twice (second dropped), Blue Owl missing, Dynamo extra: 2 predicted rows after dedup,
    # Acme fully right (row TP 1, item TP 3). Row P = 1/2, R = 1/3; item P = 3/6, R = 3/9.
    response = PERFECT.split("\n")[:3] + ["| Acme Corp | 1990-01-01 | 5 |", "| Dynamo Inc | 2010-01-01 | 10 |"]
    s = score_table("\n".join(response), GOLD)
    assert (s.n_pred_rows, s.n_gold_rows) == (2, 3)
    assert (s.row_precision, s.row_recall) == (0.5, approx(Fraction(1, 3)))
    assert (s.item_precision, s.item_recall) == (0.5, approx(Fraction(1, 3)))


def test_duplicate_gold_rows_are_dropped() -> None:
    gold = TableGold(columns=[TableColumn(name="Name")], unique_columns=["Name"],
                     rows=[{"Name": "Acme"}, {"Name": "ACME"}])
    s = score_table("| Name |\n|---|\n| acme |", gold)
    assert (s.n_gold_rows, s.success) == (1, True)


def test_join_on_unaligned_key_is_exact() -> None:
    # A key column scored by url_match is not aligned: the join needs equal preprocessed cells.
    cols = [TableColumn(name="site", preprocess="none", metric="url_match"), TableColumn(name="n")]
    gold = TableGold(columns=cols, unique_columns=["site"], rows=[{"site": "https://a.example", "n": "x"}])
    assert score_table("| site | n |\n|-|-|\n| https://a.example | X |", gold).success
    assert score_table("| site | n |\n|-|-|\n| https://a.example/ | x |", gold).row_recall == 0.0


def test_success_when_preprocessed_tables_are_equal() -> None:
    # evaluate_single_query's first test: equal preprocessed tables score 1 even when a metric says 0
    # (a blank number_near cell reads as NaN on both sides, which is never near).
    cols = [TableColumn(name="site", preprocess="none", metric="in_match"),
            TableColumn(name="n", preprocess="none", metric="number_near", criterion=0.1)]
    gold = TableGold(columns=cols, unique_columns=["site"], rows=[{"site": "a", "n": ""}])
    s = score_table("| site | n |\n|-|-|\n| a | |", gold)
    assert (s.success, s.item_precision) == (True, 0.5)
    assert not score_table("| n | site |\n|-|-|\n| | a |", gold).success  # columns in another order


def test_parse_markdown_table_variants() -> None:
    assert parse_markdown_table("a | b\n--- | :---:\n1 | 2\n3\n\ntext") is None  # fewer than 4 pipes
    assert parse_markdown_table("| A b | c |\n|---|---|\n| x | \"q\" |\n| 1 |") == (
        ["ab", "c"], [["x", "q"], ["1", ""]])
    assert parse_markdown_table("| a |\n|---|\n|   |\n| z |\n| - |") == (["a"], [["z"]])
    assert parse_markdown_table("| a | b |\n| 1 | 2 |\n  | 3 | 4 |") == (["a", "b"], [["1", "2"]])
    with pytest.raises(ValueError, match="row 1 has 5 cells"):
        parse_markdown_table("| a | b |\n|---|---|\n| x \\| y | 2 |")
    assert parse_markdown_table("") is None


def test_alias_match_key_alignment() -> None:
    cols = [TableColumn(name="Person", metric="alias_match"), TableColumn(name="City", metric="alias_match")]
    gold = TableGold(
        columns=cols, unique_columns=["Person"],
        rows=[{"Person": "Robert Smith", "City": "Port Varn"}, {"Person": "Ann Lee", "City": "Oslet"}],
        aliases={"Person": {"Robert Smith": ["Bob Smith"]}, "city": {"Port Varn": ["Varn"]}},
    )
    s = score_table("| Person | City |\n|---|---|\n| BOB SMITH | Varn |\n| Ann Lee | Oslet |", gold)
    assert s.success
    # "Bob Smith" and "Robert Smith" align to one gold row: the second is a duplicate and is dropped.
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
