"""The CLI: instant help, world generate/inspect, clear errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

from simrl.cli.main import app
from typer.testing import CliRunner

from tests.conftest import TINY

runner = CliRunner()


def test_help_imports_nothing_heavy():
    code = ("import sys, simrl.cli.main as m; "
            "heavy = [x for x in ('networkx', 'faker', 'pyarrow', 'numpy', 'bm25s', 'mcp', 'torch') if x in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_command_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "world" in result.output
    for args in (["world", "--help"], ["world", "generate", "--help"], ["world", "inspect", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_generate_then_inspect(tmp_path):
    out = tmp_path / "w"
    result = runner.invoke(app, ["world", "generate", str(TINY), "--seed", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "150 entities" in result.output
    result = runner.invoke(app, ["world", "inspect", str(out)])
    assert result.exit_code == 0, result.output
    assert "Constraint checks" in result.output and "one_ceo_at_a_time" in result.output
    result = runner.invoke(app, ["world", "inspect", str(out), "--json"])
    report = json.loads(result.output)
    assert report["ok"] and report["manifest"]["seed"] == 5


def test_inspect_flags_a_tampered_file(tmp_path):
    out = tmp_path / "w"
    assert runner.invoke(app, ["world", "generate", str(TINY), "--out", str(out)]).exit_code == 0
    with (out / "corpus.jsonl").open("a") as f:
        f.write("\n")
    result = runner.invoke(app, ["world", "inspect", str(out)])
    assert result.exit_code == 2  # refused up front, like every reader of a world
    assert "corpus.jsonl" in result.output and "checksums" in result.output


def test_malformed_spec_exits_2_without_traceback(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\nentities: -3\ntasks:\n  qa: {per_1k_entities: x}\n")
    result = subprocess.run([sys.executable, "-m", "simrl.cli.main", "world", "generate", str(spec),
                             "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "entities:" in result.stderr and "tasks.qa.per_1k_entities:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_paths_exit_2(tmp_path):
    result = runner.invoke(app, ["world", "generate", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not found" in result.output
    result = runner.invoke(app, ["world", "inspect", str(tmp_path)])
    assert result.exit_code == 2 and "not a world folder" in result.output
    result = runner.invoke(app, ["world", "generate", str(TINY), "--out", str(tmp_path / "o"), "--seed", "-1"])
    assert result.exit_code == 2


def test_entities_bounded_by_the_spec_model(tmp_path):
    """--entities has the bounds of a spec's own `entities` field: far past it is one line, exit 2, at once."""
    from simrl.world.spec import WorldSpec

    least, most = WorldSpec.entity_bounds()
    for n in (most + 1, 99_999_999_999_999, least - 1):
        result = subprocess.run([sys.executable, "-m", "simrl.cli.main", "world", "generate", str(TINY), "--seed",
                                 "3", "--entities", str(n), "--out", str(tmp_path / "o")],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "--entities" in lines[0] and f"{most:,}" in lines[0], result.stderr
        assert not (tmp_path / "o").exists()
