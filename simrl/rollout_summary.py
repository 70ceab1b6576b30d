"""What ``simrl rollout`` reports after its episodes (the command's library side): a table per task type and
the world model's compliance with control instructions, read from the trajectories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simrl.types import Trajectory
from simrl.world.schema import Task


def episode_table(trajs: Sequence[Trajectory], tasks: Sequence[Task], kinds: Sequence[str], title: str) -> Any:
    """A rich table, one row per task type of ``kinds`` that ran: episodes, success rate, mean turns, episodes
    that ended in an environment failure and truncated ones (``trajs[i]`` is the episode of ``tasks[i]``)."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("task type", "episodes", "success", "mean turns", "env failures", "truncated"):
        table.add_column(col)
    for kind in kinds:
        group = [t for t, task in zip(trajs, tasks) if task.type == kind]
        if group:
            table.add_row(kind, str(len(group)), f"{sum(t.status == 'success' for t in group) / len(group):.1%}",
                          f"{sum(len(t.turns) for t in group) / len(group):.1f}",
                          str(sum(t.status == 'env_failure' for t in group)),
                          str(sum(t.status == 'truncated' for t in group)))
    return table


def compliance_lines(trajs: Sequence[Trajectory]) -> list[str]:
    """One line per perturbation type asked of a world model by control instructions: the share that complied,
    of how many attempts, first try / after a retry / injected in code instead
    (:func:`simrl.perturb.compliance_rates`)."""
    from simrl.perturb import compliance_rates

    return [f"compliance {kind}: {c['rate']:.0%} of {int(c['attempts'])} (first try {int(c['complied_first_try'])}, "
            f"after retry {int(c['complied_after_retry'])}, injected {int(c['fell_back'])})"
            for kind, c in compliance_rates(trajs).items()]
