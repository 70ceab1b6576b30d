"""The ablation report: the primary test first, secondary Holm-corrected, baselines, subsets, rendering, plots."""

from __future__ import annotations

import json

import pytest

from simrl.errors import SimrlError
from simrl.evaluation.edge_cases import EdgeCaseScore
from simrl.evaluation.results import EvalResult, SubsetScore, TaskResult
from simrl.experiment.comparisons import Difference, PositiveControlResult, PrimaryChoice, PrimaryResult
from simrl.experiment.recipe import PositiveControl
from simrl.experiment.report import build_report, load_report, render_report, write_report
from simrl.experiment.report_md import markdown, statements
from simrl.experiment.stats import paired_test

TASKS = 20


def _eval(success: float, seed: int, multi: float | None = None, met: float | None = None) -> EvalResult:
    """20 tasks x 2 trials whose overall success is ``success``: the first ``round(40 * success)`` episodes
    succeed; ``multi``: success on the 6-task ``multi_page`` subset; ``met``: an edge case the policy met."""
    wins = round(2 * TASKS * success)
    per_task = [TaskResult(task_id=f"t{i}", type="records", success=[2 * i < wins, 2 * i + 1 < wins],
                           reward=[float(2 * i < wins), float(2 * i + 1 < wins)]) for i in range(TASKS)]
    cases = {"none": EdgeCaseScore(episodes=30, success=success, mean_turns=4.0)}
    if met is not None:
        cases = {"pagination": EdgeCaseScore(episodes=10, success=met, mean_turns=7.5), **cases}
    subsets = {"read": SubsetScore(tasks=10, episodes=20, success=success), "write": SubsetScore(
        tasks=10, episodes=20, success=min(1.0, success + 0.1))}
    if multi is not None:
        subsets["multi_page"] = SubsetScore(tasks=6, episodes=12, success=multi)
    return EvalResult(tasks=TASKS, trials=2, episodes=2 * TASKS, edge_cases=cases, per_task=per_task, subsets=subsets,
                dropped=1, dropped_ids=["t99"],
                metrics={"success": wins / (2 * TASKS), "pass@2": min(1.0, success + 0.1), "avg@2": success,
                         "reward": success, "mean_turns": 5.0, "env_failures": 0.0})


def _fake_runs(root, arms: dict[str, list[int]]) -> dict[str, dict[int, str]]:
    dirs = {}
    for a, (arm, seeds) in enumerate(arms.items()):
        for s in seeds:
            d = root / arm / f"seed-{s}"
            d.mkdir(parents=True)
            rows = [{"step": t, "reward_mean": min(1.0, 0.1 + 0.02 * t * (a + 1) + 0.01 * s), "success_rate": 0.5,
                     "turns": 6, "env_failures": 0, "signal_groups": 0.25 * (a + 1) + 0.05 * s} for t in range(1, 31)]
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{torn")
            dirs.setdefault(arm, {})[s] = f"{arm}/seed-{s}"
    return dirs


CTL = {0: 0.6, 1: 0.7, 2: 0.65}
UNC = {0: 0.3, 1: 0.35, 2: 0.4}
ENVS = {"sim-controlled": {"kind": "world model (oracle) + mcpmark (inject)", "world_model": "oracle",
                           "description": "oracle records with the mcpmark schedule injected"},
        "sim-uncontrolled": {"kind": "world model (oracle)", "world_model": "oracle", "description": ""},
        "real": {"kind": "real", "world_model": "real", "description": ""}}


@pytest.fixture
def report(tmp_path):
    runs = _fake_runs(tmp_path, {"sim-controlled": [0, 1, 2], "sim-uncontrolled": [0, 1, 2]})
    arms = {"sim-controlled": {s: _eval(v, s, multi=v - 0.1, met=0.5) for s, v in CTL.items()},
            "sim-uncontrolled": {s: _eval(v, s, multi=v - 0.2, met=0.2) for s, v in UNC.items()}}
    base = {"candidates": {s: _eval(0.1 + 0.05 * s, s) for s in (0, 1, 2)},
            "warmstart": {s: _eval(0.3 + 0.1 * (s == 1), s) for s in (0, 1, 2)},
            "untrained": {s: _eval(0.05, s) for s in (0, 1, 2)}}
    pairs = [("sim-controlled", "sim-uncontrolled")] + [(a, b) for a in arms for b in base]
    return build_report(arms, base, comparisons=pairs, run_dirs=runs, failed={"real": {0: "Traceback...\nboom"}},
                        primary=PrimaryChoice(a="sim-controlled", b="sim-uncontrolled", declared=True),
                        recipe="tiny", environments=ENVS, bootstrap_reps=2000,
                        evaluation={"env": "mcp-world", "tasks": TASKS, "trials": 2, "max_turns": 14})


def test_primary_is_the_paired_test_with_a_task_by_seed_bootstrap(report):
    p = report["primary"]
    assert (p["a"], p["b"], p["metric"], p["declared"]) == ("sim-controlled", "sim-uncontrolled", "success", True)
    ref = paired_test([CTL[s] for s in (0, 1, 2)], [UNC[s] for s in (0, 1, 2)])
    t = p["test"]
    assert t["paired"] and t["seeds"] == [0, 1, 2] and t["mean"] == pytest.approx(0.3)
    assert t["p"] == pytest.approx(ref.p) and (t["low"], t["high"]) == pytest.approx((ref.interval.low,
                                                                                     ref.interval.high))
    bs = p["bootstrap"]  # per (seed, task) differences of the 20 tasks' mean success
    assert (bs["runs"], bs["tasks"], bs["reps"]) == (3, TASKS, 2000) and bs["mean"] == pytest.approx(0.3)
    assert bs["low"] <= 0.3 <= bs["high"]
    again = build_report({"a": {s: _eval(v, s) for s, v in CTL.items()}, "b": {s: _eval(v, s) for s, v in UNC.items()}},
                         {}, comparisons=[("a", "b")], primary=PrimaryChoice(a="a", b="b"), bootstrap_reps=2000)
    assert again["primary"]["bootstrap"] == bs and not again["primary"]["declared"]  # same seed, same interval


def test_secondary_comparisons_are_holm_corrected_over_subsets_and_baselines(report):
    sec = report["secondary"]
    keys = {(d["a"], d["b"], d["subset"]) for d in sec}
    assert ("sim-controlled", "sim-uncontrolled", "overall") not in keys  # the primary is not secondary
    assert {("sim-controlled", "sim-uncontrolled", s) for s in ("read", "write", "multi_page")} <= keys
    assert ("sim-controlled", "candidates", "overall") in keys and ("sim-uncontrolled", "untrained", "overall") in keys
    assert ("sim-controlled", "candidates", "multi_page") not in keys  # candidates has no multi_page subset
    assert not any(d["subset"] in ("pagination", "none") for d in sec)  # edge cases met never define a comparison
    tested = [d for d in sec if d["p"] is not None]
    assert all(d["p_holm"] >= d["p"] for d in tested) and any(d["p_holm"] > d["p"] for d in tested)
    smallest = min(tested, key=lambda d: d["p"])
    assert smallest["p_holm"] == pytest.approx(min(1.0, len(tested) * smallest["p"]))
    multi = next(d for d in sec if d["subset"] == "multi_page" and d["b"] == "sim-uncontrolled")
    assert multi["mean"] == pytest.approx(0.4)  # 0.5, 0.6, 0.55 vs 0.1, 0.15, 0.2
    assert report["dropped"] == {"0": {"count": 1, "ids": ["t99"]}, "1": {"count": 1, "ids": ["t99"]},
                                 "2": {"count": 1, "ids": ["t99"]}}
    assert report["arms"]["sim-controlled"]["subsets"]["multi_page"]["mean"] == pytest.approx(0.55)
    assert all(d["same_tasks"] for d in sec if d["subset"] != "overall")
    assert "†" not in markdown(report)


def test_a_subset_of_other_tasks_is_flagged():
    ctl = {s: _eval(v, s, multi=0.5) for s, v in CTL.items()}
    unc = {s: _eval(v, s, multi=0.2) for s, v in UNC.items()}
    unc[1].subsets["multi_page"] = SubsetScore(tasks=5, episodes=10, success=0.2)  # one task fewer at seed 1
    r = build_report({"c": ctl, "u": unc}, {}, comparisons=[("c", "u")], primary=PrimaryChoice(a="c", b="u"),
                     bootstrap_reps=200)
    flags = {d["subset"]: d["same_tasks"] for d in r["secondary"]}
    assert flags == {"read": True, "write": True, "multi_page": False}
    assert "| c − u | multi_page † |" in markdown(r) and "not a like-for-like comparison" in markdown(r)


def test_markdown_opens_with_the_primary_and_labels_the_rest(report):
    md = markdown(report)
    sections = [ln for ln in md.splitlines() if ln.startswith("## ")]
    assert sections[0] == "## Primary comparison"
    assert sections[1:4] == ["## Trained arms against the baselines", "## Environments", "## Secondary comparisons"]
    head = md.split("## Trained arms")[0]
    assert "**sim-controlled − sim-uncontrolled** on `success`. Declared in the recipe" in head
    assert "Difference +0.300, paired over seeds 0, 1, 2 (3 seeds): 95% interval [" in head
    assert "Task × seed stratified bootstrap" in head and "20 task(s) × 3 seeds" in head
    assert "**The primary interval excludes 0**: sim-controlled is higher than sim-uncontrolled" in head
    assert "- **sim-controlled** − **candidates** on success:" in md and "**sim-controlled beats candidates**" in md
    assert "**sim-uncontrolled** − **untrained**" in md and "**sim-uncontrolled** − **warmstart**" in md
    assert "Secondary, not preregistered:" in md and "Holm-corrected" in md and "| Holm p |" in md
    assert "a perfect simulator, not a language model" in md and "`simrl wm eval`" in md
    assert "| sim-controlled | world model (oracle) + mcpmark (inject) | oracle records with the mcpmark" in md
    assert "Dropped as unsolvable by the scripted expert within 14 turns" in md and "`t99`" in md
    assert "## Edge cases met by the policy (descriptive)" in md and "not comparable across arms" in md
    assert "| candidates | baseline | 3 |" in md and "real seed 0 (Traceback...)" in md


def test_verdicts_follow_the_numbers(report):
    report["primary"]["test"].update(low=-0.05, high=0.65)  # pretend a wide interval
    assert "**The primary interval includes 0**: these seeds cannot tell" in "\n".join(statements(report))
    report["primary"]["declared"] = False
    assert "Not declared in the recipe: the default" in "\n".join(statements(report))
    report["primary"]["test"] = None
    report["primary"]["why_not"] = "no finished evaluation of real"
    assert "could not be computed: no finished evaluation of real." in "\n".join(statements(report))
    d = next(d for d in report["secondary"] if (d["a"], d["b"], d["subset"]) == ("sim-uncontrolled", "warmstart",
                                                                                  "overall"))
    assert "sim-uncontrolled does not beat warmstart (the interval includes 0)" in markdown(report)
    d.update(low=0.01, high=0.2, mean=0.1)  # the raw interval excludes 0, Holm's p (1.0) does not agree
    assert "**sim-uncontrolled beats warmstart** (the interval excludes 0, though not after Holm's correction)" \
        in markdown(report)
    d.update(p_holm=0.01)
    assert "**sim-uncontrolled beats warmstart** (the interval excludes 0)." in markdown(report)


def test_render_writes_markdown_and_readable_plots(report, tmp_path):
    written = write_report(report, tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["final_scores.png", "learning_curves.png", "report.json", "report.md", "subsets.png"]
    md = (tmp_path / "report.md").read_text()
    assert "## Final scores" in md and "## Success by task property" in md and "| real | 0 | failed |" in md
    assert "![learning curves](plots/learning_curves.png)" in md and "![subsets](plots/subsets.png)" in md
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    (tmp_path / "report.md").unlink()
    assert render_report(tmp_path)[0].read_text() == md  # re-rendered from report.json alone
    assert json.loads((tmp_path / "report.json").read_text())["version"] == 2


def test_signal_curve_is_read_from_the_metrics(report, tmp_path):
    from simrl.experiment.report_plots import curves

    got = curves(report, tmp_path, "signal")
    assert set(got) == {"sim-controlled", "sim-uncontrolled"}
    steps, points = got["sim-uncontrolled"]  # seeds 0, 1, 2: 0.50, 0.55, 0.60 at every step
    assert steps == list(range(1, 31)) and all(p[0] == pytest.approx(0.55) for p in points)
    assert all(0.0 <= p[1] <= p[0] <= p[2] <= 1.0 for p in points)


def test_learning_curves_are_smoothed_over_the_raw_ones_for_any_logged_metric(report, tmp_path):
    import numpy as np

    from simrl.experiment.report_plots import curves, ema, plot_learning_curves, span

    d = tmp_path / "sim-controlled" / "seed-0"  # a noisy seed, with a metric of the trainer's own (any name)
    rows = [{"step": t, "reward_mean": 0.5 + 0.3 * (-1) ** t, "skill/cursor_followed": t / 30} for t in range(1, 31)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw, smooth = curves(report, tmp_path, "reward", smooth=False), curves(report, tmp_path, "reward")
    steps, points = raw["sim-controlled"]
    seeds = [[json.loads(ln)["reward_mean"] for ln in (tmp_path / "sim-controlled" / f"seed-{s}" / "metrics.jsonl")
              .read_text().splitlines() if ln.startswith("{") and ln.endswith("}")] for s in (0, 1, 2)]
    assert [p[0] for p in points] == pytest.approx(np.mean(seeds, axis=0))  # raw: the plain mean over seeds
    smoothed = np.mean([ema(x, span(30)) for x in seeds], axis=0)
    assert [p[0] for p in smooth["sim-controlled"][1]] == pytest.approx(smoothed)
    assert np.ptp(np.diff(smoothed)) < np.ptp(np.diff([p[0] for p in points]))  # the zigzag damped
    skill = curves(report, tmp_path, "skill/cursor_followed", smooth=False)
    assert list(skill) == ["sim-controlled"] and skill["sim-controlled"][1][-1][0] == pytest.approx(1.0)
    made = plot_learning_curves(report, tmp_path, tmp_path / "c.png", keys=("reward", "skill/cursor_followed"))
    assert made is not None and made.read_bytes()[:4] == b"\x89PNG"
    assert plot_learning_curves(report, tmp_path, tmp_path / "none.png", keys=("no_such_metric",)) is None


def test_subsets_plot_names_each_subset_with_its_task_count_and_marks_a_measured_zero(report, tmp_path):
    from simrl.experiment.report_plots import plot_subsets, subset_bars, task_counts

    assert task_counts(report, "read") == "10 tasks" and task_counts(report, "multi_page") == "6 tasks"
    zero = json.loads(json.dumps(report))  # untrained measured 0.00 on `read`
    for rec in zero["baselines"]["untrained"]["seeds"].values():
        rec["subsets"]["read"]["success"] = 0.0
    zero["baselines"]["untrained"]["subsets"]["read"] |= {"mean": 0.0, "low": 0.0, "high": 0.0}
    marks = {(c, name): mark for c, row in subset_bars(zero) for name, _, mark, _ in row}
    assert marks[("read", "untrained")] == "zero" and marks[("read", "sim-controlled")] == "bar"
    assert marks[("multi_page", "untrained")] == "missing"  # the baselines were not evaluated on it
    assert plot_subsets(zero, tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_report_folders(tmp_path):
    with pytest.raises(SimrlError, match="run `simrl ablate"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text('{"version": 99}')
    with pytest.raises(SimrlError, match="not a simrl report"):
        render_report(tmp_path)
    (tmp_path / "report.json").write_text('{"version": 1, "arms": {}}')
    with pytest.raises(SimrlError, match="report version 1 .*re-run `simrl ablate"):
        render_report(tmp_path)


def test_report_and_ablate_cli(report, tmp_path):
    import typer
    from simrl.cli.ablate import ablate
    from simrl.cli.main import _Group
    from simrl.cli.report import report as report_cmd
    from typer.testing import CliRunner

    app = typer.Typer(cls=_Group)
    app.command("report")(report_cmd)
    app.command("ablate")(ablate)
    (tmp_path / "report.json").write_text(json.dumps(report))
    ok = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.split() == [str(tmp_path / n) for n in ("report.md", "plots/final_scores.png",
                                                             "plots/subsets.png", "plots/learning_curves.png")]
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "run `simrl ablate" in missing.output
    bad = CliRunner().invoke(app, ["ablate", str(tmp_path / "nope.yaml")])
    assert bad.exit_code == 2 and "recipe not found" in bad.output


def _with_control(multi_ctl: float, multi_unc: float) -> dict:
    arms = {"sim-controlled": {s: _eval(v, s, multi=multi_ctl + 0.01 * s) for s, v in CTL.items()},
            "sim-uncontrolled": {s: _eval(v, s, multi=multi_unc + 0.01 * s) for s, v in UNC.items()}}
    base = {"warmstart": {s: _eval(0.3, s, multi=0.0) for s in (0, 1, 2)}}
    return build_report(arms, base, comparisons=[("sim-controlled", "warmstart")], bootstrap_reps=200,
                        primary=PrimaryChoice(a="sim-controlled", b="sim-uncontrolled", declared=True),
                        positive=PositiveControl(subsets=["multi_page"], baseline="warmstart"))


def test_positive_control_passes_when_some_arm_learned_the_skill():
    report = _with_control(0.5, 0.0)
    pc = report["positive_control"]
    assert pc["passed"] and pc["subsets"]["multi_page"]["learned_by"] == ["sim-controlled"]
    text = markdown(report)
    assert text.index("## Positive control") > text.index("Primary") and "Passed" in text
    assert "could not answer" not in text


def test_a_positive_control_on_every_task_asks_whether_the_budget_moved_the_policy_at_all():
    """``overall`` (every evaluation task) is a positive-control subset: an arm above the warm start overall passes it;
    arms no better than the warm start fail it, and the report says so first."""
    arms = {"sim-controlled": {s: _eval(v, s) for s, v in CTL.items()},
            "sim-uncontrolled": {s: _eval(v, s) for s, v in UNC.items()}}

    def control(base: float) -> dict:
        return build_report(arms, {"warmstart": {s: _eval(base, s) for s in (0, 1, 2)}}, bootstrap_reps=200,
                            comparisons=[("sim-controlled", "warmstart")],
                            primary=PrimaryChoice(a="sim-controlled", b="sim-uncontrolled", declared=True),
                            positive=PositiveControl(subsets=["overall"], baseline="warmstart"))

    low, high = min(min(CTL.values()), min(UNC.values())), max(max(CTL.values()), max(UNC.values()))
    moved = control(low - 0.2)
    assert moved["positive_control"]["passed"] and moved["positive_control"]["subsets"]["overall"]["learned_by"]
    still = control(high + 0.2)
    assert not still["positive_control"]["passed"]
    assert markdown(still).index("no arm learned overall") < markdown(still).index("## Positive control")
    with pytest.raises(ValueError, match="known: overall, read"):
        PositiveControl(subsets=["everything"])


def test_an_arm_whose_training_never_met_the_situation_does_not_pass_the_positive_control(tmp_path):
    """sim-controlled beats the warm start on multi_page, but its training logged no cursor offered at any step of
    any seed (read from the runs' metrics.jsonl): general competence, not the skill; the control fails, and says
    why. With one step that met a cursor, the same numbers pass."""
    from simrl.experiment.report import read_met_in_training

    def runs(offered: float) -> dict:
        dirs = {}
        for s in (0, 1, 2):
            d = tmp_path / f"{offered}" / "sim-controlled" / f"seed-{s}"
            d.mkdir(parents=True)
            rows = [{"step": t, "skills": {"cursor_offered": offered if (s, t) == (2, 3) else 0.0, "fault_met": None}}
                    for t in range(1, 5)]
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            dirs[s] = f"sim-controlled/seed-{s}"
        return read_met_in_training(tmp_path / f"{offered}", {"sim-controlled": dirs, "sim-uncontrolled": {0: None}})

    never, once = runs(0.0), runs(0.5)
    assert never["sim-controlled"] == {"cursor_offered": 0.0, "fault_met": None}
    assert once["sim-controlled"]["cursor_offered"] == pytest.approx(0.5 / 12)
    assert never["sim-uncontrolled"] == {"cursor_offered": None, "fault_met": None}  # no run folder: unknown
    arms = {"sim-controlled": {s: _eval(v, s, multi=0.5 + 0.01 * s) for s, v in CTL.items()},
            "sim-uncontrolled": {s: _eval(v, s, multi=0.01 * s) for s, v in UNC.items()}}
    base = {"warmstart": {s: _eval(0.3, s, multi=0.0) for s in (0, 1, 2)}}

    def control(met: dict) -> dict:
        return build_report(arms, base, comparisons=[], bootstrap_reps=200, met=met,
                            primary=PrimaryChoice(a="sim-controlled", b="sim-uncontrolled", declared=True),
                            positive=PositiveControl(subsets=["multi_page"], baseline="warmstart"))

    failed, passed = control(never), control(once)
    sub = failed["positive_control"]["subsets"]["multi_page"]
    assert failed["positive_control"]["passed"] is False and sub["learned_by"] == [] and sub["not_met"] == [
        "sim-controlled"]
    text = markdown(failed)
    assert "sim-controlled is above `warmstart` here too but never met this situation in training" in text
    assert "could not answer its question: no arm learned multi_page" in text
    assert passed["positive_control"]["passed"] and passed["positive_control"]["subsets"]["multi_page"] == {
        **sub, "learned_by": ["sim-controlled"], "not_met": []}


def test_a_failed_positive_control_is_said_plainly_before_other_comparisons():
    report = _with_control(0.0, 0.0)
    assert report["positive_control"]["passed"] is False
    text = markdown(report)
    verdict = text.index("This experiment could not answer its question: no arm learned multi_page")
    assert verdict < text.index("## Final scores") and "learned by no arm" in text
    assert build_report({"a": {0: _eval(0.5, 0)}}, {}, comparisons=[],
                        primary=PrimaryChoice(a="a", b="a"))["positive_control"] is None


def test_skill_and_heldout_curves_are_read_from_nested_fields_and_curve_files(report, tmp_path):
    from simrl.experiment.report_plots import curves, plot_all

    for s in (0, 1, 2):
        d = tmp_path / "sim-controlled" / f"seed-{s}"
        rows = [{"step": t, "reward": 0.5, "skills": {"cursor_followed": t / 10, "fault_retried": None}}
                for t in range(1, 11)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        points = [{"step": t, "success": 0.1 * t, "subsets": {"multi_page": 0.05 * t}} for t in (0, 5, 10)]
        (d / "curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    skill = curves(report, tmp_path, "skills/cursor_followed", smooth=False)
    assert skill["sim-controlled"][1][-1][0] == pytest.approx(1.0)
    assert curves(report, tmp_path, "skills/fault_retried") == {}  # never measured: no curve
    held = curves(report, tmp_path, "subsets/multi_page", smooth=False, file="curve.jsonl")
    assert held["sim-controlled"][0] == [0, 5, 10] and held["sim-controlled"][1][-1][0] == pytest.approx(0.5)
    names = {p.name for p in plot_all(report, tmp_path, tmp_path / "plots")}
    assert {"skill_curves.png", "heldout_curves.png"} <= names


def test_each_test_is_one_typed_result_that_round_trips_report_json(report):
    """report.md reads the primary, secondary and positive-control results back as the typed objects they were
    built as: the JSON (key order included) is exactly their dump, and only the fields a test was given appear."""
    again = json.loads(json.dumps(report))
    p = PrimaryResult.model_validate(again["primary"])
    assert json.dumps(p.model_dump()) == json.dumps(report["primary"]) and isinstance(p.test, Difference)
    assert p.test.excludes_zero() is (p.test.low > 0 or p.test.high < 0)  # a real interval: 3 seeds, not degenerate
    at_zero = p.test.model_copy(update={"low": 0.0, "high": 0.2})
    assert not at_zero.excludes_zero() and at_zero.model_copy(update={"low": 0.01}).excludes_zero()
    assert not at_zero.model_copy(update={"low": 0.01, "degenerate": True, "df": 0.0}).excludes_zero()  # one seed
    assert not {"a", "b", "arm", "same_tasks", "p_holm"} & set(report["primary"]["test"])
    secondary = [Difference.model_validate(d) for d in again["secondary"]]
    assert json.dumps([d.model_dump() for d in secondary]) == json.dumps(report["secondary"])
    assert all(list(d)[:2] == ["a", "b"] and list(d)[-1] == "p_holm" and "arm" not in d for d in report["secondary"])
    assert {("same_tasks" in d) for d in report["secondary"]} == {True, False}  # subset tests only
    control = _with_control(0.5, 0.0)["positive_control"]
    pc = PositiveControlResult.model_validate(json.loads(json.dumps(control)))
    assert json.dumps(pc.model_dump()) == json.dumps(control)
    assert [t.arm for t in pc.subsets["multi_page"].tests] == ["sim-controlled", "sim-uncontrolled"]
    assert all(list(t)[0] == "arm" and "p_holm" not in t for t in control["subsets"]["multi_page"]["tests"])


def test_tracked_scalars_are_the_typed_results_fields(report):
    from simrl.experiment.tracking_report import report_values

    values, t = report_values(report), report["primary"]["test"]
    assert {k: values[f"primary/{k}"] for k in ("mean", "low", "high", "p")} == {k: t[k] for k in ("mean", "low",
                                                                                                      "high", "p")}
    assert values["primary/bootstrap_high"] == report["primary"]["bootstrap"]["high"]
    sec = next(d for d in report["secondary"] if d["subset"] == "read" and d["p_holm"] is not None)
    assert values[f"secondary/{sec['a']} - {sec['b']}/read/success/p_holm"] == sec["p_holm"]
    assert f"secondary/{sec['a']} - {sec['b']}/read/success/p" not in values
