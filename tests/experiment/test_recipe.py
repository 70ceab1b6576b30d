"""Recipes: the shipped ones load; every problem is reported on one line naming the field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from simrl.errors import SimrlError, SpecError
from simrl.experiment.recipe import load_recipe, parse_recipe, recipe_yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "recipes").glob("*.yaml"))
BASE = {
    "name": "t",
    "world": {"spec": str(ROOT / "worlds" / "tiny.yaml")},
    "env": {"id": "mcp-world"},
    "arms": {"real": {"environment": "real"},
             "sim": {"environment": "world_model", "backend": "oracle", "schedule": "mcpmark"}},
    "budget": {"steps": 3},
}


def _with(patch: dict) -> dict:
    data = copy.deepcopy(BASE)
    for dotted, value in patch.items():
        *path, last = dotted.split(".")
        node = data
        for key in path:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def test_shipped_recipes_load():
    assert {p.stem for p in SHIPPED} >= {"quickstart", "mcp-controlled-vs-uncontrolled", "search-fictional-worlds"}
    for path in SHIPPED:
        recipe = load_recipe(path)
        assert Path(recipe.world.spec).is_absolute() and Path(recipe.world.spec).exists()
        assert parse_recipe(yaml.safe_load(recipe_yaml(recipe))) == recipe  # recipe.yaml round-trips
    quick = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    assert list(quick.arms) == ["real", "sim-uncontrolled", "sim-controlled"] and len(quick.seeds) >= 7
    assert quick.real.make_options() == {"transport": "inprocess", "fault_rate": 0.1}
    ablation = load_recipe(ROOT / "recipes" / "mcp-controlled-vs-uncontrolled.yaml")
    assert list(ablation.all_arms()) == ["real", "sim-uncontrolled", "sim-controlled"] and len(ablation.seeds) == 7
    assert ablation.arms["sim-controlled"].schedule == "mcpmark"
    assert (ablation.primary.a, ablation.primary.b) == ("sim-controlled", "sim-uncontrolled")
    assert ablation.positive_control.subsets == ["multi_page", "faulted"]
    search = load_recipe(ROOT / "recipes" / "search-fictional-worlds.yaml")
    assert search.env.id == "search" and search.world.eval_worlds


@pytest.mark.parametrize("patch, field, words", [
    ({"budget.stepz": 3}, "budget.stepz", "unknown field"),
    ({"budget.steps": -1}, "budget.steps", "greater than or equal to 1"),
    ({"arms.real.schedule": "gentle"}, "arms.real", "only world_model arms"),
    ({"arms.real.mode": "control"}, "arms.real", "needs a world_model arm"),
    ({"arms.sim.mode": "control", "arms.sim.schedule": None}, "arms.sim", "needs a schedule"),
    ({"arms.sim.backend": "openai"}, "arms.sim", "needs model and base_url"),
    ({"trainer.kind": "ppo"}, "trainer.kind", "'ppo' is not a trainer; known: embedded, trl, verl"),
    ({"env.id": "nope"}, "env.id", "unknown environment 'nope'; registered: bfcl, mcp, mcp-world, search"),
    ({"env.id": "bfcl"}, "(top level)", "environment 'bfcl' has no world-model version"),
    ({"env.id": "mcp"}, "env.id", "environment 'mcp' declares no task types"),
    ({"env.task_types": ["qa"]}, "env", "not served by mcp-world"),
    ({"budget.group_size": 1}, "budget.group_size", "greater than or equal to 2"),
    ({"seeds": [1, 1]}, "(top level)", "distinct"),
    ({"world.eval_worlds": [0]}, "world", "training seed"),
    ({"grid": {"arm": "real", "schedules": ["gentle"]}}, "(top level)", "grid.arm"),
    ({"real.fault_rate": 2}, "real.fault_rate", "less than or equal to 1"),
    ({"arms": {}}, "arms", "at least 1"),
    ({"arms": {"Bad Name": {"environment": "real"}}}, "(top level)", "bad arm name"),
    ({"primary": {"a": "nope", "b": "real"}}, "(top level)", "primary.a 'nope' is not an arm; arms: real, sim"),
    ({"primary": {"a": "sim", "b": "oracle"}}, "(top level)", "neither an arm nor a baseline; use one of real, sim, "
                                                              "candidates, warmstart, untrained"),
    ({"primary": {"a": "sim", "b": "sim"}}, "(top level)", "compare two different arms"),
    ({"baselines": ["candidates", "oracle"]}, "(top level)", "baselines: unknown ['oracle']; known: candidates, "
                                                             "warmstart, untrained"),
    ({"baselines": ["untrained", "untrained"]}, "(top level)", "a baseline named twice"),
    ({"baselines": ["candidates"], "primary": {"a": "sim", "b": "untrained"}}, "(top level)",
     "neither an arm nor a baseline; use one of real, sim, candidates"),
    ({"baselines": ["candidates"], "positive_control": {"baseline": "warmstart"}}, "(top level)",
     "positive_control.baseline 'warmstart' is not among baselines ['candidates']"),
    ({"primary": {"a": "sim", "b": "real", "metric": "pass@3"}}, "(top level)",
     "primary.metric 'pass@3' is not evaluated here; use one of success, reward, avg@1, pass@1"),
    ({"primary": {"a": "sim", "b": "real", "metric": "item_f1"}}, "(top level)", "not evaluated here"),
    ({"primary": {"a": "sim"}}, "primary.b", "Field required"),
    ({"primary": {"a": "sim", "b": "real", "alpha": 0.1}}, "primary.alpha", "unknown field"),
])
def test_invalid_recipe_names_the_field(patch, field, words):
    with pytest.raises(SpecError) as err:
        parse_recipe(_with(patch))
    lines = str(err.value).splitlines()
    assert lines[0] == "recipe: invalid recipe"
    assert any(line.strip().startswith(f"{field}:") and words in line for line in lines[1:]), str(err.value)


def test_several_problems_one_line_each():
    with pytest.raises(SpecError) as err:
        parse_recipe(_with({"budget.steps": 0, "policy.dim": 1, "colour": "red"}))
    fields = {line.split(":")[0].strip() for line in str(err.value).splitlines()[1:]}
    assert fields == {"budget.steps", "policy.dim", "colour"}


def test_files_are_checked_and_resolved(tmp_path):
    (tmp_path / "sched.yaml").write_text("name: mine\nperturbations: {rate_limit: {rate: 0.1}}\n")
    good = _with({"world.spec": "../worlds/tiny.yaml", "arms.sim.schedule": "sched.yaml"})
    (tmp_path / "worlds").mkdir()
    (tmp_path / "worlds" / "tiny.yaml").write_text((ROOT / "worlds" / "tiny.yaml").read_text())
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "sched.yaml").write_text((tmp_path / "sched.yaml").read_text())
    (tmp_path / "r" / "ok.yaml").write_text(yaml.safe_dump(good))
    recipe = load_recipe(tmp_path / "r" / "ok.yaml")
    assert recipe.world.spec == str(tmp_path / "worlds" / "tiny.yaml")
    assert recipe.arms["sim"].schedule == str(tmp_path / "r" / "sched.yaml")

    bad = _with({"world.spec": "nowhere.yaml", "arms.sim.schedule": "no-such-schedule"})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(SpecError) as err:
        load_recipe(tmp_path / "bad.yaml")
    text = str(err.value)
    assert "world.spec: world spec not found" in text and "arms.sim.schedule: schedule not found" in text


def test_file_level_errors(tmp_path):
    with pytest.raises(SpecError, match="recipe not found"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_recipe(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_recipe(tmp_path / "broken.yaml")
    text = yaml.safe_dump(BASE).replace("  sim:", "  real:\n    environment: real\n  sim:")
    (tmp_path / "dup.yaml").write_text(text)
    with pytest.raises(SpecError, match="duplicate key 'real'"):
        load_recipe(tmp_path / "dup.yaml")


def test_arms_and_grid():
    recipe = parse_recipe(_with({"grid": {"arm": "sim", "schedules": ["gentle", "fault-heavy"]}}))
    assert list(recipe.all_arms()) == ["real", "sim", "sim@gentle", "sim@fault-heavy"]
    assert recipe.arm("sim@gentle").schedule == "gentle" and recipe.arm("sim").schedule == "mcpmark"
    assert recipe.arm("real").world_model() == "real" and recipe.arm("sim").world_model() == "oracle"
    with pytest.raises(SimrlError, match="no arm 'nope'; arms: real, sim"):
        recipe.arm("nope")


def test_primary_is_declared_or_left_to_the_default():
    assert parse_recipe(_with({})).primary is None
    rec = parse_recipe(_with({"primary": {"a": "sim", "b": "candidates"}, "evaluation.trials": 3}))
    assert (rec.primary.a, rec.primary.b, rec.primary.metric) == ("sim", "candidates", "success")
    assert parse_recipe(_with({"primary": {"a": "real", "b": "sim", "metric": "pass@3"},
                               "evaluation.trials": 3})).primary.metric == "pass@3"
    assert parse_recipe(yaml.safe_load(recipe_yaml(rec))) == rec  # round-trips through recipe.yaml
