"""The report's PNG plots (matplotlib, Agg backend): learning curves, final scores, success by task property.

* ``learning_curves.png``: per training step, from each run's ``metrics.jsonl``, one panel per metric
  (reward, success when it differs, the share of GRPO groups with a signal; any ``metrics.jsonl``
  field can be asked for, e.g. ``skill/cursor_followed``). Per arm: the mean over seeds of each seed's
  series smoothed by a debiased exponential moving average (:func:`ema`, span ``max(2, steps // 8)``),
  with a band (the 95% t interval over seeds of the smoothed series), and the raw mean faint behind it;
  the warm-start baseline's held-out level of the same metric as a dashed reference line; the legend
  below the panels, off the data.
* ``final_scores.png``: held-out success (and pass@k) per arm and baseline with interval error bars.
* ``subsets.png``: held-out success per task-property subset (fixed before the run, the same tasks in
  every arm), as horizontal bars grouped by subset, each subset labelled with its task count; a mean of
  0.00 is drawn as a marker with its value (measured), a subset an entry was not evaluated on says so.
  Edge cases the policy met are not plotted: they differ by arm and are only described in ``report.md``.
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


def ema(values: Sequence[float], span: int) -> list[float]:
    """Debiased exponential moving average: ``y_t = Σ_i w^i x_{t-i} / Σ_i w^i`` with ``w = 1 - 2 / (span + 1)``
    over ``i = 0..t`` (pandas' ``ewm(span=span, adjust=True).mean()``; the debiasing keeps the first points
    from being pulled towards 0, as TensorBoard's smoothing does). ``span`` 1 returns the values.

    >>> [round(v, 3) for v in ema([0.0, 1.0, 1.0], 3)]  # w = 0.5: 0, 1/1.5, 1.5/1.75
    [0.0, 0.667, 0.857]
    """
    w, num, den, out = 1.0 - 2.0 / (max(1, span) + 1.0), 0.0, 0.0, []
    for v in values:
        num, den = w * num + v, w * den + 1.0
        out.append(num / den)
    return out


def span(steps: int) -> int:
    """The smoothing span of a curve of ``steps`` points: ``max(2, steps // 8)`` (1 below 4 points)."""
    return 1 if steps < 4 else max(2, steps // 8)


KEYS = {"reward": ("reward_mean", "reward"), "success": ("success_rate", "success"), "signal": ("signal_groups",)}
"""Curve -> the ``metrics.jsonl`` fields it is read from, first found (simrl.trainers.lifecycle.StepMetrics first);
any other curve name is read from the field of that name."""
CURVES = ("reward", "success", "signal")
"""The learning curves drawn by default."""
TITLES = {"signal": "groups with a signal", "reward": "training reward", "success": "training success"}


SKILL_CURVES = ("skills/cursor_followed", "skills/fault_retried", "skills/success_cursor", "skills/success_fault")
"""Per-step skill rates (simrl.experiment.skills) drawn in ``skill_curves.png``."""
HELDOUT_CURVES = ("success", "subsets/multi_page", "subsets/faulted")
"""Held-out curve fields (``curve.jsonl``, ``evaluation.every``) drawn in ``heldout_curves.png``."""
TITLES |= {"skills/cursor_followed": "cursor offered -> followed (training)",
           "skills/fault_retried": "fault met -> call retried (training)",
           "skills/success_cursor": "success when a cursor was offered (training)",
           "skills/success_fault": "success when a fault was met (training)",
           "subsets/multi_page": "held-out success: multi_page tasks", "subsets/faulted": "held-out success: faulted tasks"}


def _value(row: Mapping[str, Any], key: str) -> float | None:
    """A row's value of a curve: a field, one of :data:`KEYS`' fields, or a nested ``a/b`` path."""
    if "/" in key and key not in row:
        head, rest = key.split("/", 1)
        return _value(row[head], rest) if isinstance(row.get(head), dict) else None
    v = next((row[k] for k in KEYS.get(key, (key,)) if isinstance(row.get(k), int | float)), None)
    return None if v is None else float(v)


def _carried(series: Mapping[int, float], steps: Sequence[int]) -> dict[int, float]:
    """``series`` at every one of ``steps``: a step without a value takes the last value before it."""
    before = [t for t in series if t <= steps[0]] if steps else []
    out, last = {}, (series[max(before)] if before else None)
    for t in steps:
        last = series.get(t, last)
        if last is not None:
            out[t] = last
    return out


def curves(report: Mapping[str, Any], root: Path, key: str, smooth: bool = True,
           file: str = "metrics.jsonl", fill: bool = True) -> dict[str, tuple[list[int], list[tuple[float, float, float]]]]:
    """Arm -> (steps, [(mean, low, high) per step]) of ``key`` (``reward``, ``success``, ``signal`` or any
    ``metrics.jsonl`` field) over the seeds whose runs logged it, each seed's series smoothed by :func:`ema`
    (``smooth``) or raw.

    Only steps every such seed reached are kept (the curves of a resumed or cut run stop early). A value that
    the seeds do not share two steps of (a skill rate, measured only on steps where the skill was met) is
    carried forward from each seed's last measured step instead (``fill``), from the first step every seed
    measured it.
    """
    out = {}
    for arm, entry in report["arms"].items():
        series = []
        for rec in entry["seeds"].values():
            path = root / rec["run_dir"] / file if rec.get("run_dir") else None
            rows = read_metrics(path) if path is not None and path.is_file() else []
            by_step = {int(r["step"]): v for r in rows if (v := _value(r, key)) is not None}
            if by_step:
                series.append(by_step)
        if not series:
            continue
        steps = sorted(set.intersection(*(set(s) for s in series)))
        if len(steps) < 2 and fill:  # a rate measured only on some steps (a skill met now and then)
            steps = sorted(t for t in set.union(*(set(s) for s in series)) if t >= max(min(s) for s in series))
            series = [_carried(s, steps) for s in series]
        smoothed = [ema([s[t] for t in steps], span(len(steps)) if smooth else 1) for s in series]
        points = [mean_ci([sm[i] for sm in smoothed]) for i in range(len(steps))]
        rate = all(0.0 <= v <= 1.0 for sm in smoothed for v in sm)  # a rate: its band is clipped to [0, 1]
        out[arm] = (steps, [(p.mean, max(0.0, p.low), min(1.0, p.high)) if rate else tuple(p) for p in points])
    return out


def plot_learning_curves(report: Mapping[str, Any], root: Path, path: Path, keys: Sequence[str] = CURVES,
                         file: str = "metrics.jsonl", titles: Mapping[str, str] | None = None) -> Path | None:
    """One panel per curve of ``keys`` (success left out when it repeats reward) per step per arm: smoothed
    mean over seeds with a band, raw mean faint behind, the warm-start level dashed, the legend below
    (module docstring); None when no run logged any of them. ``file``: the runs' file the curves are read
    from (``metrics.jsonl``; ``curve.jsonl``: the held-out points of ``evaluation.every``). Each arm keeps one
    colour in every plot (its place in the report); ``titles`` overrides :data:`TITLES`."""
    names = {**TITLES, **(titles or {})}
    colour = {arm: f"C{i}" for i, arm in enumerate(report["arms"])}
    data = {k: (c, curves(report, root, k, smooth=False, file=file)) for k in keys
            if (c := curves(report, root, k, file=file))}
    if not data:
        return None
    if "success" in data and "reward" in data and data["success"][1] == data["reward"][1]:
        data.pop("success")  # binary rewards: the success panel would repeat the reward's
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 3.8), squeeze=False)
    warm = report.get("baselines", {}).get("warmstart", {}).get("metrics", {})
    for ax, (key, (per_arm, raw)) in zip(axes[0], data.items()):
        for arm, (steps, points) in per_arm.items():
            line = ax.plot(steps, [p[0] for p in points], label=arm, linewidth=2, color=colour.get(arm))[0]
            ax.fill_between(steps, [p[1] for p in points], [p[2] for p in points], color=line.get_color(), alpha=0.15,
                            linewidth=0)
            ax.plot(raw[arm][0], [p[0] for p in raw[arm][1]], color=line.get_color(), alpha=0.3, linewidth=0.8)
        level = warm.get(key) if file != "metrics.jsonl" or key in CURVES else None  # a held-out level
        if level is None and key.startswith("subsets/"):
            level = report.get("baselines", {}).get("warmstart", {}).get("subsets", {}).get(key.split("/", 1)[1])
        if level is not None:
            ax.axhline(level["mean"], color="black", linestyle="--", linewidth=1,
                       label="warm start (held-out, mean over seeds)")
        values = [v for _, points in per_arm.values() for p in points for v in p]
        if values and min(values) >= 0.0 and max(values) <= 1.0:
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{names.get(key, key)} (mean over seeds)")
        ax.set_title(names.get(key, key))
        ax.grid(alpha=0.3)
    n = max(len(a.get_legend_handles_labels()[0]) for a in axes[0])
    handles, labels = max((a.get_legend_handles_labels() for a in axes[0]), key=lambda hl: len(hl[0]))
    steps = max(len(s) for per_arm, _ in data.values() for s, _ in per_arm.values())
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(n, 4), frameon=False,
               fontsize=9, title=f"bold: EMA span {span(steps)}, band: {report['level']:.0%} interval over seeds; "
                                 "faint: raw mean", title_fontsize=8)
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


def task_counts(report: Mapping[str, Any], subset: str) -> str:
    """``"12 tasks"`` (``"10-12 tasks"`` when seeds differ): the tasks of ``subset`` over every entry and seed."""
    counts = {r["subsets"][subset]["tasks"] for _, e, _ in _entries(report) for r in e["seeds"].values()
              if subset in r.get("subsets", {}) and isinstance(r["subsets"][subset].get("tasks"), int)}
    if not counts:
        return "tasks ?"
    low, high = min(counts), max(counts)
    return f"{low} task{'s' if high != 1 else ''}" if low == high else f"{low}-{high} tasks"


def subset_bars(report: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, bool, str, Mapping[str, Any] | None]]]]:
    """What the subsets plot draws: per subset ``(subset, [(entry, is_baseline, mark, interval)])``, ``mark``
    ``bar``, ``zero`` (a measured mean of 0: a marker, not an empty slot) or ``missing`` (not evaluated)."""
    entries = _entries(report)
    names: list[str] = []
    for _, e, _ in entries:
        names += [c for c in e.get("subsets", {}) if c not in names]
    out = []
    for c in names:
        row = []
        for name, e, base in entries:
            d = e.get("subsets", {}).get(c)
            row.append((name, base, "missing" if d is None else "zero" if d["mean"] == 0.0 else "bar", d))
        out.append((c, row))
    return out


def plot_subsets(report: Mapping[str, Any], path: Path) -> Path | None:
    """Held-out success per task-property subset as horizontal bars grouped by subset (module docstring);
    None without subsets."""
    rows = subset_bars(report)
    if not rows:
        return None
    plt = _pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    n = len(rows[0][1])
    height = 0.8 / n
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + len(rows) * (0.2 * n + 0.3)))
    for j, (_, row) in enumerate(rows):
        for i, (name, base, mark, d) in enumerate(row):
            y, color = j - 0.4 + height * (i + 0.5), colors[i % len(colors)]
            if d is None:
                ax.text(0.005, y, f"{name}: not evaluated", va="center", fontsize=7, color="grey")
                continue
            err = [[max(0.0, d["mean"] - d["low"])], [max(0.0, d["high"] - d["mean"])]]
            ax.barh(y, d["mean"], height, xerr=err, capsize=2, color=color, label=name if j == 0 else None,
                    hatch=_BASELINE_HATCH if base else None, edgecolor="black", linewidth=0.5,
                    error_kw={"linewidth": 0.8})
            if mark == "zero":  # measured, not missing: a marker where the bar would be
                ax.plot(0.0, y, marker="D", markersize=4, color=color, markeredgecolor="black", clip_on=False)
            ax.text(max(d["high"], d["mean"]) + 0.012, y, f"{d['mean']:.2f}", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{c}\n({task_counts(report, c)})" for c, _ in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first subset on top; every slot shown, the empty ones too
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"held-out success (mean over seeds; {report['level']:.0%} interval)")
    ax.set_title("success by task property (hatched: baselines; ◆: measured 0.00)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, ncol=min(3, n), loc="upper center",
               bbox_to_anchor=(0.5, 0.0), frameon=False)  # below the figure: off the bars
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # legends placed below the axes included
    _pyplot().close(fig)
    return path


def plot_all(report: Mapping[str, Any], root: Path, folder: Path) -> list[Path]:
    """Every plot that has data, written into ``folder``; run folders are read relative to ``root``."""
    made = [plot_final_scores(report, folder / "final_scores.png"), plot_subsets(report, folder / "subsets.png"),
            plot_learning_curves(report, root, folder / "learning_curves.png"),
            plot_learning_curves(report, root, folder / "skill_curves.png", SKILL_CURVES),
            plot_learning_curves(report, root, folder / "heldout_curves.png", HELDOUT_CURVES, file="curve.jsonl",
                                 titles={"success": "held-out success: all tasks"})]
    return [p for p in made if p is not None]
