"""``simrl ablate --dry-run``'s time estimate: each arm at its own measured rate, language-model arms named (not
guessed) until one of their runs has logged a step."""

from __future__ import annotations

import json
from pathlib import Path

from simrl.experiment.ablate_plan import SECONDS_PER_TURN, TURNS_PER_EPISODE, describe, plan
from simrl.experiment.recipe import parse_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPE = {"name": "t", "world": {"spec": str(ROOT / "worlds" / "tiny.yaml"), "seed": 0}, "env": {"id": "mcp-world"},
          "arms": {"real": {"environment": "real"}, "sim-lm": {"environment": "world_model", "backend": "llamacpp"}},
          "budget": {"steps": 4, "group_size": 2, "batch": 1, "max_turns": 6}, "seeds": [0]}


def _log(out: Path, arm: str, steps: int, turns: float, wall_per_step: float) -> None:
    run = out / arm / "seed-0"
    run.mkdir(parents=True)
    rows = [{"step": t, "episodes": 2, "turns": turns, "wall_s": wall_per_step * t} for t in range(1, steps + 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_language_model_arm_is_named_until_measured_then_planned_at_its_own_rate(tmp_path):
    recipe, out = parse_recipe(RECIPE), tmp_path / "out"
    fresh = plan(recipe, out, 1)
    assert fresh.unmeasured == ("sim-lm",) and fresh.lm_rates == {}
    real_only = 4 * 2 * min(TURNS_PER_EPISODE, 6) * SECONDS_PER_TURN  # the real arm's 8 episodes at the constants
    assert abs(fresh.train_s - real_only) < 1e-9
    assert any(line.startswith("NOT included: the training of sim-lm") for line in describe(recipe, out, fresh))
    _log(out, "sim-lm", 1, turns=3.0, wall_per_step=60.0)  # one step: 2 episodes x 3 turns in 60 s
    measured = plan(recipe, out, 1)
    assert measured.unmeasured == () and measured.lm_rates == {"sim-lm": (3.0, 10.0, 1)}
    assert abs(measured.train_s - (real_only + 3 * 2 * 3.0 * 10.0)) < 1e-6  # 3 steps left at 10 s a turn
    text = "\n".join(describe(recipe, out, measured))
    assert "sim-lm 10.0 s per turn" in text and "NOT included" not in text
    assert measured.seconds_per_turn == SECONDS_PER_TURN  # the real arm's rate is not the language model's


def test_a_held_out_world_is_counted_whole_whatever_the_spec_lists():
    """Held-out worlds are evaluated on every task (simrl.experiment.heldout.evaluation_sets), also a seed the
    spec's splits.heldout_seeds does not list (lwm-fidelity's 1003 and 1005)."""
    from simrl.experiment.ablate_plan import eval_tasks

    listed = eval_tasks(parse_recipe({**RECIPE, "world": {**RECIPE["world"], "eval_worlds": [1000]}}))
    unlisted = eval_tasks(parse_recipe({**RECIPE, "world": {**RECIPE["world"], "eval_worlds": [1003]}}))
    alone = eval_tasks(parse_recipe(RECIPE))
    assert unlisted == listed > 2 * alone > 0  # a whole world, several times its test split
