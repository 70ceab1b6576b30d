"""``report.md`` from ``report.json``: the primary test first, then plain statements and tables.

Every sentence is generated from the numbers (:mod:`simrl.experiment.report` builds them): whether an
interval holds 0 is computed, never written by hand. The primary, secondary and positive-control results are
read back as the typed results of :mod:`simrl.experiment.comparisons` and rendered from their fields. Intervals print as ``mean [low, high]``; a single-seed
value prints without an interval and is said to be one run. Order: the preregistered primary comparison,
what each arm's environment was and which tasks were dropped, each trained arm against the baselines,
the Holm-corrected secondary comparisons, then the tables (final scores, task-property subsets, the edge
cases the policy met, per-seed values) and the plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simrl.experiment.comparisons import DEFAULT_PRIMARY, Difference, PositiveControlResult, PrimaryResult
from simrl.experiment.report_compare import OVERALL
from simrl.experiment.report_text import fmt, p_is, pval, table
from simrl.experiment.stats import Bootstrap, Interval

ORACLE_NOTE = ("`oracle` arms train against the world's exact ground truth, served without page limits or "
               "operational faults (for mcp-world: the exact record server, unpaged and fault-free): a perfect "
               "simulator, not a language model. This report therefore says nothing about the fidelity of a "
               "language world model; that is measured by `simrl wm eval`.")
CANDIDATES = "candidates"


def _how(d: Difference) -> str:
    if d.paired:
        return f"paired over seeds {', '.join(map(str, d.seeds))}"
    return "unpaired (Welch: fewer than two seeds shared)"


def _entries(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {**report["arms"], **report["baselines"]}


def primary_lines(report: Mapping[str, Any]) -> list[str]:
    """The opening section: the primary comparison's paired test, its bootstrap and a plain verdict."""
    p, level = PrimaryResult.model_validate(report["primary"]), report["level"]
    a, b, metric = p.a, p.b, p.metric
    origin = ("Declared in the recipe (`primary`) before running." if p.declared else
              f"Not declared in the recipe: the default ({DEFAULT_PRIMARY}) on success. Declare `primary: {{a, b, "
              "metric}` in the recipe before running to preregister it.")
    lines = ["## Primary comparison", "", f"**{a} − {b}** on `{metric}`. {origin}", ""]
    t = p.test
    if t is None:
        return lines + [f"The primary comparison could not be computed: {p.why_not}."]
    if t.degenerate:
        lines.append(f"- Difference {fmt(t.interval, metric, True)}, {_how(t)}: too few seeds for an interval or a test.")
    else:
        stat = f"t = {t.t:.2f}, " if t.t is not None else ""
        test = "paired t test (scipy.stats.ttest_rel)" if t.paired else "Welch's t test"
        lines.append(f"- Difference {t.mean:+.3f}, {_how(t)} ({t.n} seeds): {level:.0%} interval "
                     f"[{t.low:+.3f}, {t.high:+.3f}]; {test}: {stat}df = {t.df:.3g}, {p_is(t.p)}"
                     + (" (every seed gave the same difference: no spread, so no real interval)."
                        if t.low == t.high else "."))
    bs = p.bootstrap
    if bs is not None:
        lines.append(f"- Task × seed stratified bootstrap of the per-task differences ({bs.tasks} task(s) × "
                     f"{bs.runs} seeds; each task's seeds resampled with replacement, {bs.reps} replicates, "
                     f"seed {bs.seed}; Agarwal et al., NeurIPS 2021): {bs.mean:+.3f}, {bs.level:.0%} "
                     f"interval [{bs.low:+.3f}, {bs.high:+.3f}].")
    else:
        lines.append(f"- No task × seed bootstrap: {p.why_not}.")
    lines += ["", _verdict(t, bs, a, b, metric, level)]
    return lines


def _verdict(t: Difference, bs: Bootstrap | None, a: str, b: str, metric: str, level: float) -> str:
    if t.degenerate:
        return f"**No interval**: with {t.n} seed(s) the primary comparison cannot exclude 0."
    if t.excludes_zero():
        head = (f"**The primary interval excludes 0**: {a} is {'higher' if t.mean > 0 else 'lower'} than {b} "
                f"on {metric} at the {level:.0%} level")
    else:
        head = f"**The primary interval includes 0**: these seeds cannot tell {a} and {b} apart on {metric}"
    if bs is None:
        return head + "."
    agree = not bs.low <= 0.0 <= bs.high
    return head + f"; the task × seed bootstrap interval {'excludes' if agree else 'includes'} 0."


def environment_lines(report: Mapping[str, Any]) -> list[str]:
    """What each arm's environment was, the oracle caveat, the evaluation and the dropped tasks."""
    rows = [[name, e["kind"], e.get("description") or "—"] for name, e in report["arms"].items()]
    lines = ["## Environments", ""] + table(["arm", "environment", "description"], rows)
    if any(e.get("world_model") == "oracle" for e in report["arms"].values()):
        lines += ["", ORACLE_NOTE]
    ev = report.get("evaluation", {})
    if ev:
        lines += ["", "Held-out evaluation in the real environment: " +
                  ", ".join(f"{k} {v}" for k, v in ev.items()) + "."]
    lines += ["", _dropped_line(report), "", expressible_line(report)]
    return lines


def expressible_line(report: Mapping[str, Any]) -> str:
    """How many evaluation tasks some sequence of candidate actions solves, overall and per subset, and which
    do not (:mod:`simrl.evaluation.expressible`)."""
    ex = report.get("expressible") or {}
    if not ex:
        return "Expressibility: not checked by this evaluation (re-run the evaluation to check it)."
    per = ", ".join(f"{name} {d['expressible']}/{d['tasks']} ({d.get('expert_path', 0)} turn for turn)"
                    for name, d in ex["subsets"].items())
    head = ("Expressible by the candidate actions (some sequence of candidates solves the task in the real environment; "
            f"turn for turn: every action of the scripted expert has a candidate, no search needed): {per}.")
    bad = ex.get("not") or []
    if not bad:
        return head
    shown = "; ".join(f"`{d['task_id']}` ({d['why']})" for d in bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
    return (f"{head} **Not expressible** (no policy over these candidates can solve them within the turn limit: a gap "
            f"in candidate generation to fix, unless the task itself needs more turns than the limit): {shown}.")


def _dropped_line(report: Mapping[str, Any]) -> str:
    dropped = report.get("dropped") or {}
    if not dropped:
        return "Dropped tasks: not reported by this evaluation."
    turns = report.get("evaluation", {}).get("max_turns")
    within = f"within {turns} turns" if turns else "within the turn limit"
    counts = {s: d["count"] for s, d in dropped.items()}
    if not any(counts.values()):
        return f"No evaluation task was dropped: the scripted expert solves every one {within}."
    ids = sorted({i for d in dropped.values() for i in d["ids"]})
    per = ", ".join(f"seed {s}: {n}" for s, n in counts.items())
    shown = ", ".join(f"`{i}`" for i in ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
    return (f"Dropped as unsolvable by the scripted expert {within} (left out of every arm's score): {per}"
            + (f" ({shown})." if ids else "."))


def baseline_lines(report: Mapping[str, Any]) -> list[str]:
    """Per trained arm: does it beat ``candidates`` (interval excluding 0), and its differences to the other
    baselines (secondary tests, Holm-corrected)."""
    p, bases = PrimaryResult.model_validate(report["primary"]), list(report["baselines"])
    metric = p.metric
    lines = ["## Trained arms against the baselines", ""]
    if CANDIDATES not in bases:
        lines.append("No `candidates` baseline (uniform choice among the candidate actions) in this report.")
    secondary = [Difference.model_validate(d) for d in report["secondary"]]
    overall = {(d.a, d.b): d for d in secondary if d.subset == OVERALL and d.metric == metric}
    if (p.a, p.b) not in overall and p.test is not None:
        overall[(p.a, p.b)] = p.test
    for arm, e in report["arms"].items():
        if not e["seeds"]:
            continue
        for base in bases:
            d = overall.get((arm, base))
            if d is None:
                continue
            if d.degenerate:
                lines.append(f"- **{arm}** − **{base}** on {metric}: {fmt(d.interval, metric, True)}: no interval.")
                continue
            holm = f", Holm {p_is(d.p_holm)}" if d.p_holm is not None else ""
            tail = (f"**{arm} {'beats' if d.mean > 0 else 'is below'} {base}** (the interval excludes 0"
                    + (", though not after Holm's correction" if (d.p_holm or 0.0) >= 0.05 else "") + ")"
                    if d.excludes_zero() else f"{arm} does not beat {base} (the interval includes 0)")
            lines.append(f"- **{arm}** − **{base}** on {metric}: {fmt(d.interval, metric, True)}, {_how(d)}{holm}: "
                         f"{tail}.")
    return lines


def secondary_lines(report: Mapping[str, Any]) -> list[str]:
    """The secondary comparisons table, labelled as such, with raw and Holm-adjusted p-values."""
    tests = [Difference.model_validate(d) for d in report["secondary"]]
    lines = ["## Secondary comparisons", "",
             f"Secondary, not preregistered: {len(tests)} paired t tests (overall on `{report['primary']['metric']}`, "
             "and success within each task-property subset); p-values Holm-corrected over all of them "
             f"(Holm, 1979); intervals are unadjusted {report['level']:.0%} t intervals.", ""]
    rows = [[f"{d.a} − {d.b}", d.subset + ("" if d.same_tasks is not False else " †"), d.metric,
             fmt(d.interval, d.metric, True), "paired" if d.paired else "Welch", pval(d.p), pval(d.p_holm),
             "yes" if d.excludes_zero() else "no"] for d in tests]
    if not rows:
        return lines + ["No secondary comparison could be computed."]
    lines += table(["a − b", "subset", "metric", "difference", "test", "p", "Holm p", "excludes 0"], rows)
    if any(d.same_tasks is False for d in tests):
        lines += ["", "† The subset held different numbers of tasks in the two arms at some seed: not the same "
                      "tasks, so not a like-for-like comparison."]
    return lines


def _score_rows(report: Mapping[str, Any], headline: Sequence[str]) -> list[list[str]]:
    rows = []
    for name, e in _entries(report).items():
        cells = [fmt(Interval.from_dict(e["metrics"][m]), m) if m in e["metrics"] else "—" for m in headline]
        rows.append([name, e["kind"], str(len(e["seeds"])), *cells])
    return rows


def _seed_rows(report: Mapping[str, Any], headline: Sequence[str]) -> list[list[str]]:
    rows = []
    for name, e in _entries(report).items():
        for s, rec in e["seeds"].items():
            rows.append([name, s, *(f"{rec['metrics'][m]:.2f}" if m in rec["metrics"] else "—" for m in headline)])
        rows += [[name, s, *(["failed"] * len(headline))] for s in e["failed"]]
    return rows


def _by_name(report: Mapping[str, Any], key: str, count: str, unit: str,
             order: Any = None) -> tuple[list[str], list[list[str]]]:
    """Columns (subset or edge-case names) and one row per arm / baseline of ``success [interval] (n unit)``."""
    entries, names = _entries(report), []
    for e in entries.values():
        names += [c for c in e[key] if c not in names]
    names = sorted(names, key=order) if order else names
    rows = []
    for name, e in entries.items():
        cells = []
        for c in names:
            ns = sorted({rec[key][c][count] for rec in e["seeds"].values() if c in rec[key]})
            n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}" if ns else "0"
            cells.append(f"{fmt(Interval.from_dict(e[key][c]))} ({n} {unit})" if c in e[key] else "—")
        rows.append([name, *cells])
    return names, rows


def positive_lines(report: Mapping[str, Any]) -> list[str]:
    """The positive-control section (after the primary): were the skills under test learned at all?"""
    if not report.get("positive_control"):
        return []
    pc = PositiveControlResult.model_validate(report["positive_control"])
    base, level = pc.baseline, report["level"]
    lines = ["## Positive control (declared in the recipe)", "",
             f"Some trained arm must beat `{base}` on success within each subset below, with a {level:.0%} "
             "interval above 0 (paired over seeds, the same pre-drawn evaluation episodes in every arm).", ""]
    missing = []
    for subset, res in pc.subsets.items():
        tests = sorted(res.tests, key=lambda t: -t.mean)
        best = "; ".join(f"{t.arm} {fmt(t.interval, signed=True)}" for t in tests) or "no result"
        verdict = f"learned by {', '.join(res.learned_by)}" if res.learned_by else "learned by no arm"
        lines.append(f"- `{subset}`: {verdict} (arm - {base}: {best}).")
        if res.not_met:
            lines.append(f"  {', '.join(res.not_met)} {'is' if len(res.not_met) == 1 else 'are'} above `{base}` "
                         f"here too but never met this situation in training: a gain in general competence on "
                         "these tasks, not the skill, so it does not count.")
        if not res.learned_by:
            missing.append(subset)
    if pc.passed:
        lines += ["", "Passed: the skills under test were learned at this budget, so the arms could differ in them."]
    else:
        lines[:0] = [f"**This experiment could not answer its question: no arm learned {', '.join(missing)}** "
                     f"(no arm beat `{base}` there with an interval above 0). An arm can only differ from another "
                     "by a skill it learned, so the primary comparison says nothing about the effect of the "
                     "arms' environments on that skill.", ""]
    return lines


def statements(report: Mapping[str, Any]) -> list[str]:
    """The opening statements: the primary section, then the trained arms against the baselines and the
    failed runs (the Markdown lines of those sections)."""
    failed = [f"{arm} seed {s} ({why.splitlines()[0][:120] if why else 'no reason given'})"
              for arm, e in report["arms"].items() for s, why in e["failed"].items()]
    tail = ([f"{len(failed)} run(s) failed and are left out of the statistics: " + "; ".join(failed) + "."]
            if failed else [])
    positive = positive_lines(report)
    return [*primary_lines(report), "", *(positive + [""] if positive else []), *baseline_lines(report),
            *(["", *tail] if tail else [])]


def markdown(report: Mapping[str, Any], plots: Sequence[Path] = ()) -> str:
    """The whole ``report.md`` text: the primary comparison first."""
    from simrl.experiment.report_fidelity import fidelity_lines

    headline = report["headline"]
    lines = [f"# Ablation report: {report.get('recipe') or 'unnamed recipe'}", ""]
    lines += statements(report)
    fidelity = fidelity_lines(report)
    lines += ["", *environment_lines(report), *(["", *fidelity] if fidelity else []), "", *secondary_lines(report)]
    lines += ["", "## Final scores", "",
              f"Mean over seeds with {report['level']:.0%} Student-t intervals, rates clipped to [0, 1].", ""]
    lines += table(["arm", "kind", "seeds", *headline], _score_rows(report, headline))
    names, rows = _by_name(report, "subsets", "tasks", "tasks per seed")
    if names:
        lines += ["", "## Success by task property", "",
                  "Subsets fixed before the run from each task and its episode seeds: the same tasks in every arm "
                  "of a seed.", ""] + table(["arm", *names], rows)
    names, rows = _by_name(report, "edge_cases", "episodes", "ep. per seed", order=lambda c: (c == "none", c))
    if names:
        lines += ["", "## Edge cases met by the policy (descriptive)", "",
                  "Met by the policy, not comparable across arms: an episode counts under every edge case its "
                  "own actions ran into (`none`: it met none), so each arm's groups hold different episodes.", ""]
        lines += table(["arm", *names], rows)
    lines += ["", "## Per-seed values", ""] + table(["arm", "seed", *headline], _seed_rows(report, headline))
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem.replace('_', ' ')}]({p.as_posix()})" for p in plots]
    return "\n".join(lines) + "\n"
