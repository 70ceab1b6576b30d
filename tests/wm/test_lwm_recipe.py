"""recipes/lwm-small.yaml: a language-model arm trains, answers are cached, unparseable ones are counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from simrl.experiment.recipe import load_recipe, parse_recipe, resolve_files
from tests.wm.tiny_llama import HAVE_TRANSFORMERS

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "lwm-small.yaml"


def test_the_shipped_recipe_has_the_three_arms_and_a_cached_language_model():
    recipe = load_recipe(RECIPE)
    arms = recipe.all_arms()
    assert {n: a.world_model() for n, a in arms.items()} == {"real": "real", "sim-oracle": "oracle",
                                                             "sim-lwm": "transformers"}
    assert arms["sim-lwm"].model == "runs/lwm/wm-model/model" and arms["sim-lwm"].cache == "runs/lwm/wm-cache"


@pytest.mark.skipif(not HAVE_TRANSFORMERS, reason="needs torch, transformers, tokenizers")
def test_language_model_arm_trains_and_counts_unparsed_answers(tmp_path):
    """A tiny random model answers gibberish: every prediction is unparsed, shown raw, and counted."""
    from simrl.testing.tiny_model import make_tiny_model
    from simrl.trainers.embedded import train_arm

    data = yaml.safe_load(RECIPE.read_text())
    lwm = data["arms"]["sim-lwm"] | {"model": str(make_tiny_model(tmp_path / "tiny")),
                                     "cache": str(tmp_path / "cache"), "max_tokens": 8}
    data |= {"arms": {"sim-lwm": lwm}, "budget": {"steps": 1, "group_size": 2, "batch": 1, "max_turns": 2},
             "warm_start": {"demos": 0}, "evaluation": {"trials": 1, "max_tasks": 1}, "world": data["world"] |
             {"eval_worlds": []}}
    recipe = resolve_files(parse_recipe(data), RECIPE.parent)
    run = tmp_path / "run"
    train_arm(recipe, "sim-lwm", 0, run, worlds=tmp_path / "worlds", run_eval=False)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trajs = [json.loads(line) for line in (run / "trajectories.jsonl").read_text().splitlines()]
    calls = sum(len(t["turns"]) for t in trajs)
    unparsed = sum(t["info"]["wm_unparsed"] for t in trajs)
    assert 0 < unparsed <= calls  # every world-model answer (a final answer needs none)
    assert metrics[0]["wm_unparsed"] >= unparsed > 0 and metrics[0]["env_failures"] == 0
    assert any((tmp_path / "cache").iterdir())  # the answers were cached
