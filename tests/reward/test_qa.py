"""SQuAD-style exact match / token F1 and answer extraction for ``qa`` tasks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simrl.reward import QAScore, exact_match, extract_answer, f1, normalize_answer, score_qa
from simrl.world.schema import QAGold


def test_normalize_answer() -> None:
    assert normalize_answer("The Blue Owl") == "blue owl"
    assert normalize_answer("  An apple, a PEAR; the end.  ") == "apple pear end"
    assert normalize_answer("Theodore's") == "theodores"  # "the" inside a word is kept
    assert normalize_answer("...") == ""


def test_exact_match_and_f1_equal_after_normalisation() -> None:
    gold = QAGold(answer="The Blue Owl")
    assert exact_match("blue owl", gold) == 1.0
    assert f1("blue owl", gold) == 1.0
    assert exact_match("blue owls", gold) == 0.0


def test_f1_partial_overlap() -> None:
    # pred tokens [blue, owl, tavern], gold [blue, owl, inn]: 2 common -> P = R = 2/3, F1 = 2/3.
    assert f1("the blue owl tavern", QAGold(answer="Blue Owl Inn")) == pytest.approx(2 / 3)
    # pred [blue, owl], gold [blue, owl, inn, of, varn]: P = 1, R = 2/5, F1 = 2 * 0.4 / 1.4 = 4/7.
    assert f1("Blue Owl", QAGold(answer="Blue Owl Inn of Varn")) == pytest.approx(4 / 7)
    # repeated tokens count once per occurrence (multiset): pred [owl, owl], gold [owl]:
    # common 1 -> P = 1/2, R = 1, F1 = 2/3.
    assert f1("owl owl", QAGold(answer="owl")) == pytest.approx(2 / 3)
    assert f1("red fox", QAGold(answer="Blue Owl")) == 0.0
    assert f1("", QAGold(answer="Blue Owl")) == 0.0


def test_aliases() -> None:
    gold = QAGold(answer="Robert Smith", aliases=["Bob Smith", "R. Smith"])
    assert exact_match("bob smith", gold) == 1.0
    assert exact_match("r smith", gold) == 1.0
    assert exact_match("Bobby", gold) == 0.0
    # best over answer and aliases: "bob" vs "Bob Smith": P = 1, R = 1/2 -> F1 = 2/3.
    assert f1("Bob", gold) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>first</answer> reasoning <answer>\n Port Varn \n</answer>", "Port Varn"),
        ("<ANSWER>Oslet</ANSWER>\nAnswer: ignored", "Oslet"),
        ("Thinking...\nAnswer: Blue Owl\nmore text\nFinal answer: Red Fox", "Red Fox"),
        ("**Final Answer:** Port Varn", "Port Varn"),
        ("answer: lower case works", "lower case works"),
        ("The answer: is not at a line start", "The answer: is not at a line start"),
        ("  just the answer  \n", "just the answer"),
        ("", ""),
    ],
)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_score_qa_extracts_first() -> None:
    gold = QAGold(answer="Blue Owl Inn")
    s = score_qa("I searched the corpus.\n<answer>The Blue Owl Tavern</answer>", gold)
    assert isinstance(s, QAScore)
    assert (s.em, s.f1, s.extracted) == (0.0, pytest.approx(2 / 3), "The Blue Owl Tavern")
    whole = score_qa("blue owl inn", gold)
    assert (whole.em, whole.f1, whole.extracted) == (1.0, 1.0, "blue owl inn")
    with pytest.raises(ValidationError):  # frozen model
        whole.em = 0.0  # type: ignore[misc]
