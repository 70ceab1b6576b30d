"""Exact match and token F1 for ``qa`` tasks (SQuAD v1.1 style).

Normalisation, exact match and token-level F1 follow the official SQuAD v1.1 evaluation script
(``evaluate-v1.1.py``, Rajpurkar et al., 2016); like that script, a prediction is scored against
every accepted answer (the gold answer and its aliases) and the best score is kept. Rewards are
plain functions returning floats in [0, 1].
"""

from __future__ import annotations

import re
import string
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from simrl.world.schema import QAGold

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^[ \t>*_#-]*(?:final[ \t]+)?answer[*_]*[ \t]*:[*_]*[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


class QAScore(BaseModel):
    """Score of one ``qa`` response: exact match and token F1 (in [0, 1]) and the extracted answer."""

    model_config = ConfigDict(frozen=True)

    em: float = Field(ge=0.0, le=1.0)
    f1: float = Field(ge=0.0, le=1.0)
    extracted: str


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 ``normalize_answer``: lowercase, drop punctuation and articles, collapse whitespace.

    Args:
        s: any answer text.

    Returns:
        The normalised text (possibly empty).

    Example:
        >>> normalize_answer("  The Blue-Owl,  Inn! ")
        'blueowl inn'
    """
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def extract_answer(text: str) -> str:
    """Pull the final answer out of a response.

    Takes the content of the last ``<answer>...</answer>`` block; else the rest of the last line
    starting with ``Answer:`` or ``Final answer:`` (case-insensitive, markdown emphasis allowed);
    else the whole text. The result is stripped.

    Args:
        text: the model's response.

    Returns:
        The answer string (``""`` when the response is empty).

    Example:
        >>> extract_answer("<answer>Paris</answer> then <answer> Lyon </answer>")
        'Lyon'
        >>> extract_answer("I looked it up.\\nFinal answer: Blue Owl Inn")
        'Blue Owl Inn'
    """
    blocks = _ANSWER_TAG.findall(text)
    if blocks:
        return blocks[-1].strip()
    lines = _ANSWER_LINE.findall(text)
    if lines:
        return lines[-1].strip().strip("*_").strip()
    return text.strip()


def _accepted(gold: QAGold) -> list[str]:
    return [gold.answer, *gold.aliases]


def _token_f1(prediction: str, truth: str) -> float:
    pred, true = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not true:
        return float(pred == true)  # both empty: a match (as SQuAD v2.0); one empty: no overlap
    same = sum((Counter(pred) & Counter(true)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(true)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: QAGold) -> float:
    """SQuAD v1.1 exact match: 1.0 when the normalised prediction equals the normalised answer or an alias.

    Args:
        prediction: the answer text (already extracted; see :func:`extract_answer`).
        gold: the task's :class:`~simrl.world.schema.QAGold`.

    Returns:
        1.0 or 0.0.

    Example:
        >>> exact_match("the blue owl", QAGold(answer="Blue Owl"))
        1.0
        >>> exact_match("Bob", QAGold(answer="Robert Smith", aliases=["Bob Smith"]))
        0.0
    """
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(truth) for truth in _accepted(gold)))


def f1(prediction: str, gold: QAGold) -> float:
    """SQuAD v1.1 token F1, the max over the answer and its aliases.

    Tokens are the whitespace-split words of :func:`normalize_answer`; with ``c`` tokens in common
    (multiset), precision = c / #prediction tokens, recall = c / #gold tokens, F1 = 2PR / (P + R).

    Args:
        prediction: the answer text (already extracted).
        gold: the task's :class:`~simrl.world.schema.QAGold`.

    Returns:
        A float in [0, 1].

    Example:
        >>> round(f1("blue owl tavern", QAGold(answer="The Blue Owl Inn")), 4)
        0.6667
    """
    return max(_token_f1(prediction, truth) for truth in _accepted(gold))


def score_qa(response: str, gold: QAGold) -> QAScore:
    """Score a full response: :func:`extract_answer`, then :func:`exact_match` and :func:`f1`.

    Args:
        response: the model's final response text.
        gold: the task's :class:`~simrl.world.schema.QAGold`.

    Returns:
        A :class:`QAScore` with ``em`` and ``f1`` in [0, 1] and the ``extracted`` answer.

    Example:
        >>> score_qa("Let me check.\\nAnswer: the Blue Owl", QAGold(answer="Blue Owl"))
        QAScore(em=1.0, f1=1.0, extracted='the Blue Owl')
    """
    answer = extract_answer(response)
    return QAScore(em=exact_match(answer, gold), f1=f1(answer, gold), extracted=answer)
