"""The report's PNG plots (matplotlib, Agg backend): learning curves, final scores, success by task property.

* ``learning_curves.png``: reward (and success, when logged) per training step from each run's
  ``metrics.jsonl``; per arm the mean over seeds with a band (the 95% t interval over seeds, or the
  single run when there is one), each seed's series first smoothed by a trailing moving average of
  ``max(1, steps // 25)`` steps.
* ``final_scores.png``: held-out success (and pass@k) per arm and baseline with interval error bars.
* ``subsets.png``: held-out success per task-property subset (fixed before the run, the same tasks in
  every arm), one bar per arm / baseline, with error bars. Edge cases the policy met are not plotted:
  they differ by arm and are only described in ``report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simrl.experiment.stats import mean_ci

_BASELINE_HATCH = "//"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` (one JSON object per training step); unreadable lines are skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def _smooth(values: Sequence[float], window: int) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        acc = acc[-window:]
        out.append(sum(acc) / len(acc))
    return out


KEYS = {"reward": ("reward_mean", "reward"), "success": ("success_rate", "success"), "signal": ("signal_groups",)}
"""Curve -> the ``metrics.jsonl`` fields it is read from, first found (simrl.trainers.lifecycle.StepMetrics first)."""


def _value(row: Mapping[str, Any], key: str) -> float | None:
    v = next((row[k] for k in KEYS[key] if isinstance(row.get(k), int | float)), None)
    return None if v is None else float(v)


def curves(report: Mapping[str, Any], root: Path, key: str) -> dict[str, tuple[list[int], list[tuple[float, float, float]]]]:
    """Arm -> (steps, [(mean, low, high) per step]) of ``key`` (``reward`` or ``success``) over the seeds whose
    runs logged it.

    Only steps every such seed reached are kept (the curves of a resumed or cut run stop early).
    """
    out = {}
    for arm, entry in report["arms"].items():
        series = []
        for rec in entry["seeds"].values():
            path = root / rec["run_dir"] / "metrics.jsonl" if rec.get("run_dir") else None
            rows = read_metrics(path) if path is not None and path.is_file() else []
            by_step = {int(r["step"]): v for r in rows if (v := _value(r, key)) is not None}
            if by_step:
                series.append(by_step)
        if not series:
            continue
        steps = sorted(set.intersection(*(set(s) for s in series)))
        window = max(1, len(steps) // 25)
        smoothed = [_smooth([s[t] for t in steps], window) for s in series]
        points = [mean_ci([sm[i] for sm in smoothed]) for i in range(len(steps))]
        rate = all(0.0 <= v <= 1.0 for sm in smoothed for v in sm)  # a rate: its band is clipped to [0, 1]
        out[arm] = (steps, [(p.mean, max(0.0, p.low), min(1.0, p.high)) if rate else tuple(p) for p in points])
    return out


def plot_learning_curves(report: Mapping[str, Any], root: Path, path: Path) -> Path | None:
    """Reward (and success, when it differs), and the share of GRPO groups with a learning signal, per step
    per arm, mean over seeds with a band; None when no run logged metrics."""
    data = {k: c for k in ("reward", "success", "signal") if (c := curves(report, root, k))}
    if not data:
        return None
    if data.get("success") == data.get("reward"):  # binary rewards: the success panel would repeat it
        data.pop("success")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(data), figsize=(6 * len(data), 4), squeeze=False)
    for ax, (key, per_arm) in zip(axes[0], data.items()):
        for arm, (steps, points) in per_arm.items():
            mean = [p[0] for p in points]
            line = ax.plot(steps, mean, label=arm)[0]
            ax.fill_between(steps, [p[1] for p in points], [p[2] for p in points], color=line.get_color(), alpha=0.2)
        values = [v for _, points in per_arm.values() for p in points for v in p]
        if values and min(values) >= 0.0 and max(values) <= 1.0:
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training step")
        what = "groups with a signal" if key == "signal" else f"training {key}"
        ax.set_ylabel(f"{what} (mean over seeds)")
        ax.set_title(f"{what} per step (band: {report['level']:.0%} interval over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _entries(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], bool]]:
    return [(n, e, False) for n, e in report["arms"].items() if e["seeds"]] + \
        [(n, e, True) for n, e in report["baselines"].items() if e["seeds"]]


def _bar(ax, x: float, d: Mapping[str, Any], width: float, baseline: bool, color: str, label: str | None,
         size: float = 8) -> None:
    """One bar with its interval as an error bar and its mean written above (so a 0 still shows)."""
    err = [[max(0.0, d["mean"] - d["low"])], [max(0.0, d["high"] - d["mean"])]]
    ax.bar(x, d["mean"], width, yerr=err, capsize=3, color=color, label=label,
           hatch=_BASELINE_HATCH if baseline else None, edgecolor="black", linewidth=0.5)
    ax.annotate(f"{d['mean']:.2f}", (x, d["high"]), ha="center", va="bottom", fontsize=size, xytext=(0, 2),
                textcoords="offset points")


def plot_final_scores(report: Mapping[str, Any], path: Path) -> Path | None:
    """Held-out success and pass@k per arm and baseline, with interval error bars."""
    entries = _entries(report)
    metrics = [m for m in report["headline"] if m == "success" or m.startswith("pass@")][:2]
    if not entries or not metrics:
        return None
    plt = _pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(5.0, 1.1 * len(entries) + 2) * len(metrics), 4),
                             squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for i, (_, e, base) in enumerate(entries):
            if m in e["metrics"]:
                _bar(ax, i, e["metrics"][m], 0.7, base, colors[i % len(colors)], None)
        ax.set_xticks(range(len(entries)), [n for n, _, _ in entries], rotation=20, ha="right")
        ax.set_ylim(0, 1.12)
        ax.set_ylabel(f"held-out {m}")
        ax.set_title(f"held-out {m} ({report['level']:.0%} interval; hatched: baselines)")
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_subsets(report: Mapping[str, Any], path: Path) -> Path | None:
    """Held-out success per task-property subset, one bar per arm / baseline; None without subsets."""
    entries = _entries(report)
    names: list[str] = []
    for _, e, _ in entries:
        names += [c for c in e.get("subsets", {}) if c not in names]
    if not entries or not names:
        return None
    plt = _pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / len(entries)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(names) * max(1, len(entries)) * 0.5 + 2), 4))
    for i, (name, e, base) in enumerate(entries):
        for j, c in enumerate(names):
            if c in e.get("subsets", {}):
                x = j - 0.4 + width * (i + 0.5)
                first = all(cc not in e["subsets"] for cc in names[:j])
                _bar(ax, x, e["subsets"][c], width, base, colors[i % len(colors)], name if first else None, size=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("held-out success")
    ax.set_title(f"success by task property ({report['level']:.0%} interval over seeds; hatched: baselines)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(5, len(entries)), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_all(report: Mapping[str, Any], root: Path, folder: Path) -> list[Path]:
    """Every plot that has data, written into ``folder``; run folders are read relative to ``root``."""
    made = [plot_final_scores(report, folder / "final_scores.png"), plot_subsets(report, folder / "subsets.png"),
            plot_learning_curves(report, root, folder / "learning_curves.png")]
    return [p for p in made if p is not None]
