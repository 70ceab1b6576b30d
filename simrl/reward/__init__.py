"""Scorers of simrl tasks: WideSearch table metrics (``table``) and SQuAD EM / F1 (``qa``).

All rewards are plain functions returning floats in [0, 1] (see :mod:`simrl.reward.widesearch` and
:mod:`simrl.reward.qa`).
"""

from simrl.reward.qa import QAScore, exact_match, extract_answer, f1, normalize_answer, score_qa
from simrl.reward.widesearch import TableScore, aggregate_trials, parse_markdown_table, score_table

__all__ = [
    "QAScore",
    "TableScore",
    "aggregate_trials",
    "exact_match",
    "extract_answer",
    "f1",
    "normalize_answer",
    "parse_markdown_table",
    "score_qa",
    "score_table",
]
