"""``simrl perturb``: preview prints the rate table and writes the plot; bad schedules exit 2."""

from __future__ import annotations

import typer
from simrl.cli.perturb import app as perturb_app
from typer.testing import CliRunner

runner = CliRunner()
app = typer.Typer()
app.add_typer(perturb_app, name="perturb")


def test_preview_prints_the_table_and_writes_the_plot(tmp_path):
    out = tmp_path / "plots" / "mcpmark.png"
    result = runner.invoke(app, ["perturb", "preview", "mcpmark", "--steps", "400", "--out", str(out)],
                           env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    for text in ("partial_response", "forced_pagination", "step 200", "50%", "0.167", "0.500", "any"):
        assert text in result.output, text


def test_preview_of_a_file_without_a_plot(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nperturbations:\n  timeout: {rate: {kind: linear, start: 0.0, end: 0.4}}\n")
    result = runner.invoke(app, ["perturb", "preview", str(path), "--steps", "10", "--points", "3"],
                           env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "timeout" in result.output and "0.200" in result.output and "plot" not in result.output


def test_malformed_schedule_exits_2_naming_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nperturbations:\n  rate_limit: {rate: {kind: linear, start: 0.0, end: 7}}\n")
    result = runner.invoke(app, ["perturb", "preview", str(path), "--steps", "10"])
    assert result.exit_code == 2
    assert "perturbations.rate_limit.rate.end" in result.output
    missing = runner.invoke(app, ["perturb", "preview", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "schedule not found" in missing.output


def test_types_lists_the_taxonomy():
    result = runner.invoke(app, ["perturb", "types"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for text in ("partial_response", "outage", "paginate", "narrow", "instead of the call"):
        assert text in result.output
