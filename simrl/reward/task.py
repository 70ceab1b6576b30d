"""Task rewards: score a final answer against a task's gold.

``qa`` and ``records`` reads are scored by exact match (with token F1 reported), ``table`` tasks by
WideSearch item F1 (success reported); ``records`` writes are scored by :func:`score_state` on the
final record state, which only the environment holding the records can read.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from simrl.reward.qa import score_qa
from simrl.reward.widesearch import score_table
from simrl.world.schema import QAGold, RecordsGold, TableGold, Task


class TaskScore(BaseModel):
    """A scored episode: ``reward`` in [0, 1], ``success`` and the metric values behind them."""

    reward: float
    success: bool
    metrics: dict[str, float]


def score_answer(task: Task, answer: str) -> TaskScore:
    """Score a final answer text against ``task.gold``.

    qa / records-read: reward = exact match (1.0 or 0.0) of the extracted answer against the gold and
    its aliases (SQuAD normalisation); table: reward = WideSearch item F1 of the last markdown table.

    Raises:
        ValueError: for a ``records`` write task (use :func:`score_state`) or a ``bfcl`` task (scored by
            the bfcl environment with BFCL's own checker).

    >>> from simrl.world.schema import Evidence
    >>> t = Task(task_id="t", type="qa", split="dev", prompt="?", gold=QAGold(answer="Port Ellen"),
    ...          evidence=Evidence(), hops=1, difficulty="easy", template="x")
    >>> score_answer(t, "<answer>port ellen</answer>").reward
    1.0
    """
    gold = task.gold
    if task.type == "bfcl":
        raise ValueError(f"task {task.task_id} is a BFCL task: the bfcl environment scores it with BFCL's checker")
    if isinstance(gold, TableGold):
        s = score_table(answer, gold)
        return TaskScore(reward=s.item_f1, success=s.success, metrics={
            "item_f1": s.item_f1, "row_f1": s.row_f1, "success": float(s.success)})
    if isinstance(gold, RecordsGold):
        if gold.kind == "write":
            raise ValueError(f"task {task.task_id} changes records: score it with score_state")
        gold = QAGold(answer=gold.answer or "", aliases=gold.aliases)
    assert isinstance(gold, QAGold)
    s = score_qa(answer, gold)
    return TaskScore(reward=s.em, success=s.em == 1.0, metrics={"em": s.em, "f1": s.f1})


def score_state(task: Task, read: Callable[[str, str], object]) -> TaskScore:
    """Score a ``records`` write task on the final state.

    Args:
        task: a records task with ``gold.kind == "write"``.
        read: ``read(record_id, field) -> value`` on the final record state (None if absent).

    Returns:
        reward = fraction of ``gold.final_state`` checks that hold; success when all hold.
    """
    gold = task.gold
    if not isinstance(gold, RecordsGold) or gold.kind != "write":
        raise ValueError(f"task {task.task_id} is not a records write task")
    hits = [str(read(c.record_id, c.field)) == str(c.value) for c in gold.final_state]
    frac = sum(hits) / len(hits) if hits else 0.0
    return TaskScore(reward=frac, success=all(hits) and bool(hits), metrics={"state_checks": frac})
