"""A consistent CLI: shipped files by name, --set overrides, choices checked at parse time, one world-model
syntax, rollout's --append and short-run note, python -m simrl, shell completion."""

from __future__ import annotations

import json
import subprocess
import sys

# mcp's stdio_client binds errlog=sys.stderr when it is imported: import it before CliRunner swaps
# sys.stderr, or stdio servers started later in this process get a stream without a fileno
import mcp.client.stdio  # noqa: F401
import pytest
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.assets import resolve, shipped_names
from simrl.errors import SpecError
from simrl.experiment.recipe import load_recipe
from simrl.perturb import load_schedule
from simrl.world import load_spec

runner = CliRunner()


def test_every_shipped_file_loads_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"quickstart", "gpu/tiny-smoke"} <= set(shipped_names("recipe"))
    assert {"mcpmark", "gentle", "fault-heavy", "records-edge-cases"} == set(shipped_names("schedule"))
    for name in shipped_names("recipe"):
        assert load_recipe(name).name
    for name in shipped_names("schedule"):
        load_schedule(name)
    for name in shipped_names("world"):
        load_spec(name)
    # repository-relative paths as the README writes them work from any directory too
    assert load_recipe("recipes/quickstart.yaml") == load_recipe("quickstart")
    assert resolve("worlds/tiny.yaml", "world").is_file()
    with pytest.raises(SpecError, match="recipe not found: nope .*quickstart"):
        load_recipe("nope")


def test_set_overrides_are_validated_like_the_file():
    rec = load_recipe("quickstart", ["seeds=[0, 1]", "budget.steps=2", "arms.real.environment=real",
                                     "warm_start.epochs=2", "~primary", "trainer.lr=1e-3"])
    assert rec.seeds == [0, 1] and rec.budget.steps == 2 and rec.warm_start.epochs == 2 and rec.primary is None
    assert rec.trainer.lr == 0.001  # Hydra's grammar: 1e-3 is a float (YAML 1.1 read it as text)
    added = load_recipe("quickstart", ["+arms.extra.environment=real", "grid.arm=sim-controlled",
                                       "grid.schedules=[mcpmark]"])  # grid: a field the file leaves out
    assert added.arms["extra"].environment == "real" and "sim-controlled@mcpmark" in added.all_arms()
    for override, message in [("budget.steps=-1", "budget.steps: Input should be greater than or equal to 1"),
                              ("budget.stepz=1", "the recipe has no budget.stepz (did you mean budget.steps?)"),
                              ("+budget.stepz=1", "budget.stepz: unknown field"),
                              ("+budget.steps=1", "budget.steps is already there; drop the +"),
                              ("seeds.x=1", "seeds is a list, not a mapping"),
                              ("budget.steps", "not KEY=VALUE"),
                              ("seeds=[0", "not KEY=VALUE"),
                              ("seeds=0,1", "a sweep"),
                              ("~arms.nope", "the recipe has no arms.nope (keys of arms: real, sim-uncontrolled")]:
        with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("(", r"\(").replace("?", r"\?")
                           .replace(")", r"\)").replace("+", r"\+")):
            load_recipe("quickstart", [override])


def test_a_key_the_recipe_lacks_is_refused_unless_added(tmp_path):
    typo = runner.invoke(app, ["ablate", "quickstart", "--set", "arms.sim-controled.environment=real", "--out",
                               str(tmp_path / "a")])
    lines = [ln for ln in typo.output.splitlines() if ln.strip()]
    assert typo.exit_code == 2 and len(lines) == 1, typo.output
    assert lines[0] == ("error: --set 'arms.sim-controled.environment=real': the recipe has no arms.sim-controled "
                        "(did you mean arms.sim-controlled?); to add it, write --set "
                        "+arms.sim-controled.environment=real")
    assert not (tmp_path / "a").exists()  # nothing trained, nothing written
    plus = runner.invoke(app, ["train", "quickstart", "--dry-run", "--set", "+arms.extra.environment=real",
                               "--out", str(tmp_path / "b")])
    assert plus.exit_code == 0 and "  extra:\n    environment: real" in plus.output, plus.output


def test_train_takes_a_name_and_set_overrides(tmp_path):
    result = runner.invoke(app, ["train", "quickstart", "--dry-run", "--set", "budget.steps=3", "--set", "seeds=[7]",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "  steps: 3\n" in result.output and "3 steps x" in result.output and "seeds:\n- 7\n" in result.output
    both = runner.invoke(app, ["train", "quickstart", "--dry-run", "--set", "budget.steps=3", "--report-to",
                               "tensorboard", "--out", str(tmp_path)])  # --set and --report-to together
    assert both.exit_code == 0 and "  steps: 3\n" in both.output and "report_to:\n  - tensorboard" in both.output, \
        both.output
    bad = runner.invoke(app, ["ablate", "quickstart", "--set", "budget.steps=zero", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "budget.steps" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize(("args", "option"), [
    (["rollout", "--env", "mcp-world", "--split", "val"], "--split"),
    (["rollout", "--env", "nowhere"], "--env"),
    (["rollout", "--env", "search", "--mode", "force"], "--mode"),
    (["rollout", "--env", "search", "--world-model", "crystal"], "--world-model"),
    (["eval", "--policy", "expert", "--env", "mcp-world", "--transport", "pigeon"], "--transport"),
    (["env", "check", "search", "--world-model", "crystal:ball"], "--world-model"),  # no --out: added below
    (["env", "check", "nowhere"], "ENV"),
    (["wm", "eval", "--trajectories", "x.jsonl", "--wm-tools", "some"], "--wm-tools"),
])
def test_enumerated_options_are_checked_before_any_work(args, option, tmp_path):
    out = [] if args[0] == "env" else ["--out", str(tmp_path / "t.jsonl")]
    result = runner.invoke(app, [*args, *out])
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output, result.output
    assert not (tmp_path / "t.jsonl").exists()


def test_one_world_model_syntax_and_the_deprecated_alias(tiny_world, tmp_path):
    base = ["rollout", "--env", "mcp-world", "--world", str(tiny_world), "--split", "train", "-n", "1"]
    new = runner.invoke(app, [*base, "--world-model", "oracle", "--out", str(tmp_path / "a.jsonl")])
    assert new.exit_code == 0, new.output
    assert json.loads((tmp_path / "a.jsonl").read_text())["backend"] == "oracle"
    twice = runner.invoke(app, [*base, "--world-model", "openai:m1", "--wm-model", "m2", "--out",
                                str(tmp_path / "b.jsonl")])
    assert twice.exit_code == 2 and "named twice" in twice.output
    old = runner.invoke(app, [*base, "--world-model", "transformers", "--wm-model", "/no/such/model", "--out",
                              str(tmp_path / "c.jsonl")])
    assert "--wm-model is deprecated; write --world-model transformers:/no/such/model" in old.output


def test_rollout_refuses_to_append_unless_asked_and_says_when_fewer_ran(tiny_world, tmp_path):
    out = tmp_path / "t.jsonl"
    base = ["rollout", "--env", "mcp-world", "--world", str(tiny_world), "--split", "dev", "--out", str(out)]
    first = runner.invoke(app, [*base, "-n", "1000"])
    assert first.exit_code == 0, first.output
    ran = len(out.read_text().splitlines())
    assert 0 < ran < 1000 and f"-n 1000 asked for more episodes than ran ({ran})" in first.output
    again = runner.invoke(app, [*base, "-n", "1"])
    assert again.exit_code == 2 and "--append" in again.output
    assert len(out.read_text().splitlines()) == ran
    appended = runner.invoke(app, [*base, "-n", "1", "--append"])
    assert appended.exit_code == 0 and len(out.read_text().splitlines()) == ran + 1


def test_defaults_agree_across_commands():
    import typer

    root = typer.main.get_command(app)

    def params(*path: str) -> dict:
        cmd = root
        for name in path:
            cmd = cmd.commands[name]
        return {p.name: p for p in cmd.params}

    rollout, eval_, wm_eval = params("rollout"), params("eval"), params("wm", "eval")
    assert rollout["split"].default == "test" and "default test" in eval_["split"].help
    assert rollout["max_turns"].default == 60 and "default 60" in eval_["max_turns"].help
    assert rollout["concurrency"].default == eval_["concurrency"].default == wm_eval["concurrency"].default == 4
    assert params("train")["resume"].default is params("ablate")["resume"].default is True


def test_rollout_help_has_panels_an_example_and_the_policy_model():
    text = runner.invoke(app, ["rollout", "--help"], env={"COLUMNS": "200"}).output
    for panel in ("Environment", "Policy", "Episodes", "World model", "Perturbations", "Output"):
        assert f"─ {panel} " in text
    assert "simrl rollout --env mcp-world" in text and "#MODEL" in text


def test_python_m_simrl_and_shell_completion():
    out = subprocess.run([sys.executable, "-m", "simrl", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("simrl ")
    text = runner.invoke(app, ["--help"]).output
    assert "--install-completion" in text and "--show-completion" in text
