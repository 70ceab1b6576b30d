"""A module that is not installed ends a command with one line naming the extra that installs it (exit 2)."""

from __future__ import annotations

import sys

from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.extras import missing_module_message, requirements


def test_each_optional_module_names_its_extra():
    reqs = requirements()
    assert reqs["torch"] == set() and "llamacpp" in reqs["llama-cpp-python"]  # torch is a dependency now
    assert "pip install 'simrl[trl]'" in missing_module_message("trl.trainer")
    assert "pip install 'simrl[llamacpp]'" in missing_module_message("llama_cpp")
    transformers = missing_module_message("transformers")
    assert "simrl[transformers]" in transformers and "simrl[trl]" in transformers
    torch = missing_module_message("torch")
    assert "a dependency of simrl" in torch and "download.pytorch.org/whl/cpu" in torch
    assert missing_module_message("simrl.no_such_module") is None  # our own module missing is a bug
    assert "not installed" in missing_module_message("no_such_module_xyz")


def test_the_cli_turns_a_missing_module_into_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich.table", None)  # `import rich.table` now raises ModuleNotFoundError
    result = CliRunner().invoke(app, ["env", "list", "--wide"])  # imports rich.table when it runs
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "rich, a dependency of simrl, is not installed" in lines[0]
    assert "Traceback" not in result.output
