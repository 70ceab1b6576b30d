"""What a schedule does over training: the expected rate of each perturbation type, as numbers,
a table and a plot (``simrl perturb preview``).

The rate of a type is the probability that it is drawn for a tool call in its scope (tools,
domains, turn window), before caps and cooldowns; ``any`` is the probability that at least one
type is drawn for a call in the scope of every type, ``1 - prod(1 - rate)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.perturb.schedule import Schedule


@dataclass(frozen=True)
class RatePoint:
    """Rates at one training step: ``step`` of ``steps``, ``progress = step / steps``, type -> rate."""

    step: int
    progress: float
    rates: dict[str, float]

    @property
    def any(self) -> float:
        """Probability that at least one type is drawn: ``1 - prod(1 - rate)``."""
        return 1.0 - math.prod(1.0 - r for r in self.rates.values())


def expected_rates(schedule: Schedule, steps: int, points: int | None = None) -> list[RatePoint]:
    """Rates at ``points`` evenly spaced training steps from 0 to ``steps`` (default: every step, at most 501).

    Raises:
        SimrlError: ``steps`` < 1 or ``points`` < 2.
    """
    if steps < 1:
        raise SimrlError(f"--steps must be at least 1, got {steps}")
    n = min(steps + 1, 501) if points is None else points
    if n < 2:
        raise SimrlError(f"need at least 2 points, got {n}")
    at = sorted({round(i * steps / (n - 1)) for i in range(n)})
    return [RatePoint(s, s / steps, schedule.rates(s / steps)) for s in at]


def rate_table(schedule: Schedule, steps: int, points: int = 5) -> Any:
    """A ``rich`` table of the rates: one row per type (and ``any``), one column per progress point
    (0, 25, 50, 75, 100 % of ``steps`` by default). Types are rows so that ten of them fit a terminal."""
    from rich.table import Table

    at = expected_rates(schedule, steps, points=min(points, steps + 1))
    table = Table(title=f"schedule {schedule.name}: expected rate per eligible tool call, {steps} training steps")
    table.add_column("type")
    for point in at:
        table.add_column(f"step {point.step}\n{point.progress:.0%}", justify="right")
    for kind in schedule.rates(0.0):
        table.add_row(kind, *(f"{p.rates[kind]:.3f}" for p in at))
    table.add_row("any", *(f"{p.any:.3f}" for p in at), style="bold")
    return table


def plot_rates(schedule: Schedule, steps: int, out: str | Path) -> Path:
    """Write a PNG of each type's rate (and ``any``) against the training step; returns ``out``.

    Needs matplotlib (imported here, Agg backend: no display).

    Raises:
        SimrlError: matplotlib is missing, or ``out`` cannot be written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SimrlError("plotting needs matplotlib: pip install matplotlib") from None
    points = expected_rates(schedule, steps)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = [p.step for p in points]
    for i, kind in enumerate(schedule.rates(0.0)):  # styles cycle so that equal curves stay visible
        ax.plot(x, [p.rates[kind] for p in points], label=kind, linestyle=("-", "--", ":", "-.")[i % 4],
                linewidth=2.2 - 0.4 * (i % 4))
    ax.plot(x, [p.any for p in points], color="0.3", linewidth=1, label="any")
    ax.set(xlabel="training step", ylabel="rate per eligible tool call", ylim=(0, 1.02), xlim=(0, steps),
           title=f"perturbation schedule: {schedule.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120, bbox_inches="tight")
    except OSError as err:
        raise SimrlError(f"could not write the plot to {out}: {err}") from None
    finally:
        plt.close(fig)
    return out
