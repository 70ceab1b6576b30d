"""The ablation report: report.json from per-seed evaluations, report.md statements and the PNG plots."""

from __future__ import annotations

import json

import pytest

from simrl.errors import SimrlError
from simrl.train.evaluate import EdgeCaseScore, EvalResult
from simrl.train.report import build_report, load_report, render_report, write_report
from simrl.train.report_md import statements


def _eval(success: float, pag: float | None = None) -> EvalResult:
    cases = {"none": EdgeCaseScore(episodes=6, success=success, mean_turns=4.0)}
    if pag is not None:
        cases = {"pagination": EdgeCaseScore(episodes=4, success=pag, mean_turns=7.5), **cases}
    return EvalResult(tasks=10, trials=2, episodes=20, edge_cases=cases,
                      metrics={"success": success, "pass@2": min(1.0, success + 0.1), "avg@2": success,
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


@pytest.fixture
def report(tmp_path):
    runs = _fake_runs(tmp_path, {"sim-controlled": [0, 1, 2], "sim-uncontrolled": [0, 1, 2]})
    arms = {"sim-controlled": {0: _eval(0.6, 0.5), 1: _eval(0.7, 0.6), 2: _eval(0.65, 0.55)},
            "sim-uncontrolled": {0: _eval(0.3, 0.2), 1: _eval(0.35, 0.3), 2: _eval(0.4, 0.25)}}
    base = {"untrained": {s: _eval(0.05) for s in (0, 1, 2)}, "warmstart": {0: _eval(0.3)}}
    return build_report(arms, base, comparisons=[("sim-controlled", "sim-uncontrolled")], run_dirs=runs,
                        failed={"real": {0: "Traceback...\nboom"}}, recipe="tiny",
                        evaluation={"env": "mcp-world", "tasks": 10, "trials": 2})


def test_build_report_intervals_and_paired_difference(report):
    c = report["arms"]["sim-controlled"]["metrics"]["success"]
    assert c["mean"] == pytest.approx(0.65) and c["n"] == 3
    # s = 0.05, t(0.975, 2) = 4.3027 -> half-width 4.3027 * 0.05 / sqrt(3) = 0.12421
    assert c["high"] - c["mean"] == pytest.approx(4.302653 * 0.05 / 3 ** 0.5, rel=1e-5)
    d = next(d for d in report["differences"] if d["subset"] == "overall" and d["metric"] == "success")
    assert d["paired"] and d["seeds"] == [0, 1, 2]
    assert d["mean"] == pytest.approx(0.3)  # per-seed differences 0.3, 0.35, 0.25
    edge = next(d for d in report["differences"] if d["subset"] == "pagination")
    assert edge["mean"] == pytest.approx(0.3)
    assert report["baselines"]["warmstart"]["metrics"]["success"]["degenerate"]
    assert report["arms"]["real"]["failed"] == {"0": "Traceback...\nboom"} and not report["arms"]["real"]["seeds"]
    assert report["headline"] == ["success", "pass@2", "avg@2", "reward", "mean_turns"]


def test_statements_come_from_the_numbers(report):
    text = "\n".join(statements(report))
    assert "**sim-controlled** success 0.65 [" in text and "the intervals do not overlap" in text
    assert "the interval excludes 0: higher at the 95% level" in text
    assert "real seed 0 (Traceback...)" in text
    report["arms"]["sim-uncontrolled"]["metrics"]["success"]["high"] = 0.9  # pretend a wide interval
    assert "the intervals overlap" in "\n".join(statements(report))


def test_render_writes_markdown_and_readable_plots(report, tmp_path):
    written = write_report(report, tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["edge_cases.png", "final_scores.png", "learning_curves.png", "report.json", "report.md"]
    md = (tmp_path / "report.md").read_text()
    assert "## Final scores" in md and "| sim-controlled | arm | 3 | 0.65 [" in md
    assert "![learning curves](plots/learning_curves.png)" in md and "| real | 0 | failed |" in md
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    (tmp_path / "report.md").unlink()
    assert render_report(tmp_path)[0].read_text() == md  # re-rendered from report.json alone


def test_signal_curve_is_read_from_the_metrics(report, tmp_path):
    from simrl.train.report_plots import curves

    got = curves(report, tmp_path, "signal")
    assert set(got) == {"sim-controlled", "sim-uncontrolled"}
    steps, points = got["sim-uncontrolled"]  # seeds 0, 1, 2: 0.50, 0.55, 0.60 at every step
    assert steps == list(range(1, 31)) and all(p[0] == pytest.approx(0.55) for p in points)
    assert all(0.0 <= p[1] <= p[0] <= p[2] <= 1.0 for p in points)


def test_bad_report_folders(tmp_path):
    with pytest.raises(SimrlError, match="run `simrl ablate"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text('{"version": 99}')
    with pytest.raises(SimrlError, match="not a simrl report"):
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
                                                             "plots/edge_cases.png", "plots/learning_curves.png")]
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "run `simrl ablate" in missing.output
    bad = CliRunner().invoke(app, ["ablate", str(tmp_path / "nope.yaml")])
    assert bad.exit_code == 2 and "recipe not found" in bad.output
