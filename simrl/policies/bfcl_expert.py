"""Scripted expert for ``bfcl`` tasks: replays BFCL's ground-truth calls turn by turn.

It validates the ``bfcl`` environment and BFCL's checker end to end: every ground-truth call string of
a user turn (bfcl-eval ``data/possible_answer/BFCL_v4_<category>.json``, e.g.
``"cd(folder='document')"``) is parsed with :mod:`ast` into a :class:`~simrl.types.ToolCall`
(:func:`~simrl.envs.bfcl_data.parse_call`), all of a turn's calls go out in one action, and a final
answer closes the turn. Turns whose ground truth is empty (``miss_param`` / ``miss_func``: the request
cannot be done yet) are answered without calls. Unlike a real policy, it reads the task's gold.
"""

from __future__ import annotations

from simrl.envs.bfcl_data import parse_call
from simrl.types import Action, Observation, Turn
from simrl.world.schema import BFCLGold, Task


class BFCLExpert:
    """The replay expert for the ``bfcl`` environment.

    Args:
        tasks: ``bfcl`` tasks (the expert finds each episode's task by id; other types are ignored).

    Raises (from :meth:`act`):
        KeyError: an episode of a task that was not given.
        ValueError: a ground-truth call string that does not parse.
    """

    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = {t.task_id: t for t in tasks if isinstance(t.gold, BFCLGold)}

    async def act(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Action:
        """The current user turn's ground-truth calls, or a final answer once they have run.

        The user turn is the number of final answers so far; after a tool-call action comes the answer.
        """
        gold = self.tasks[task_view["task_id"]].gold
        assert isinstance(gold, BFCLGold)
        if turns and not turns[-1].action.is_final:
            return Action.final("Done.")
        turn = sum(t.action.is_final for t in turns)
        calls = gold.ground_truth[turn] if turn < len(gold.ground_truth) else []
        if not calls:
            return Action.final("I cannot do that with the information and functions I have; please tell me more.")
        return Action(tool_calls=[parse_call(c, gold.involved_classes) for c in calls])


def bfcl_expert(world: object, tasks: list[Task]) -> BFCLExpert:
    """The scripted expert of ``bfcl`` (the spec's ``expert`` hook; BFCL has no world: ``world`` is unused)."""
    return BFCLExpert(tasks)
