"""Task rewards: score a final answer against a task's gold.

``qa`` and ``records`` reads are scored by exact match (with token F1 reported), ``table`` tasks by
WideSearch item F1 (success reported); ``records`` writes are scored by :func:`score_state` on the
final record state, which only the environment holding the records can read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from simrl.reward.qa import score_qa
from simrl.reward.widesearch import score_table
from simrl.world.schema import BFCLGold, QAGold, RecordsGold, TableGold, Task


class TaskScore(BaseModel):
    """A scored episode: ``reward`` in [0, 1], ``success`` and the metric values behind them."""

    reward: float
    success: bool
    metrics: dict[str, float]


def score_answer(task: Task, answer: str) -> TaskScore:
    """Score a final answer text against ``task.gold``.

    qa / records-read: reward = exact match (1.0 or 0.0) of the extracted answer against the gold and
    its aliases (SQuAD normalisation); table: reward = WideSearch item F1 of the answer's table (read as WideSearch does).

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
    if isinstance(gold, BFCLGold):
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


def is_records_write(task: Task) -> bool:
    """Whether ``task`` is a ``records`` write task (scored by :func:`score_state`, not by its answer)."""
    return isinstance(task.gold, RecordsGold) and task.gold.kind == "write"


def score_final(task: Task, answer: str, read: Callable[[str, str], object] | None = None) -> tuple[float, dict[str, Any]]:
    """An environment's reward and step info for the final ``answer`` of an episode on ``task``.

    A ``records`` write task is scored by :func:`score_state` on ``read`` (the episode's final record
    state), any other task by :func:`score_answer`.

    Returns:
        ``(reward in [0, 1], {"success": bool, "metrics": {name: float}})``.

    Raises:
        ValueError: a records write task without ``read``, or a task :func:`score_answer` refuses.
    """
    if is_records_write(task):
        if read is None:
            raise ValueError(f"task {task.task_id} changes records: scoring it needs the episode's record state")
        score = score_state(task, read)
    else:
        score = score_answer(task, answer)
    return score.reward, {"success": score.success, "metrics": score.metrics}
