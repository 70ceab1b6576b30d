"""The trainer registry's ``load_policy`` hook: every trainer kind says how its policy is loaded from a
checkpoint (and what its untrained policy is), and ``simrl ablate`` / ``simrl eval`` load runs and baselines
through it; baselines are the recipe's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simrl.envs.registry import load_entry
from simrl.errors import SimrlError
from simrl.experiment.ablate_plan import plan
from simrl.experiment.baselines import BASELINES
from simrl.experiment.heldout import evaluate_baseline, evaluate_run, load_policy
from simrl.experiment.recipe import parse_recipe
from simrl.experiment.recipe_training import TRAINERS
from simrl.policies.scorer import ScorerPolicy

ROOT = Path(__file__).resolve().parents[2]
BASE = {"name": "t", "world": {"spec": str(ROOT / "worlds" / "tiny.yaml")}, "env": {"id": "mcp-world"},
        "arms": {"real": {"environment": "real"}}, "budget": {"steps": 2}}
LLM = {**BASE, "policy": {"kind": "llm", "model": "no-such-model"}}


def _weights(policy: ScorerPolicy) -> list[torch.Tensor]:
    return [p.detach().clone() for p in policy.module.parameters()]


def test_every_trainer_kind_has_a_loadable_hook():
    for kind, trainer in TRAINERS.items():
        assert callable(load_entry(trainer.load_policy)), kind
        assert trainer.final


def test_the_embedded_hook_loads_a_scorer_or_makes_the_untrained_one(tmp_path):
    rec = parse_recipe(BASE)
    fresh = load_policy(rec, None, 3)
    assert isinstance(fresh, ScorerPolicy) and not fresh.greedy
    again, other = load_policy(rec, None, 3), load_policy(rec, None, 4)
    assert all(torch.equal(a, b) for a, b in zip(_weights(fresh), _weights(again)))  # the seed decides the weights
    assert not all(torch.equal(a, b) for a, b in zip(_weights(fresh), _weights(other)))
    fresh.save(tmp_path / "final.pt")
    loaded = load_policy(rec, tmp_path / "final.pt", 0)
    assert all(torch.equal(a, b) for a, b in zip(_weights(fresh), _weights(loaded)))
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(SimrlError, match="not a scorer checkpoint"):
        load_policy(rec, tmp_path / "bad.pt", 0)


@pytest.mark.parametrize("kind, words", [("trl", "not a Hugging Face model or adapter"),
                                         ("verl", "not a merged Hugging Face model")])
def test_llm_hooks_say_what_a_folder_lacks(kind, words, tmp_path):
    missing = str(tmp_path / "no-such-model")  # a local path: refused at once (a bare name would ask the hub, ~70 s)
    rec = parse_recipe({**LLM, "policy": {"kind": "llm", "model": missing}, "trainer": {"kind": kind}})
    (tmp_path / "final").mkdir()
    with pytest.raises(SimrlError, match=words):
        load_policy(rec, tmp_path / "final", 0)
    with pytest.raises(SimrlError, match="no-such-model"):  # the untrained policy is policy.model
        load_policy(rec, None, 0)


def test_evaluate_run_looks_for_the_trainer_kinds_final(tmp_path):
    run = tmp_path / "real" / "seed-0"
    run.mkdir(parents=True)
    with pytest.raises(SimrlError, match="need final.pt"):
        evaluate_run(run, parse_recipe(BASE))
    with pytest.raises(SimrlError, match="need final in"):
        evaluate_run(run, parse_recipe({**LLM, "trainer": {"kind": "trl"}}))


def test_baselines_are_the_recipes(tmp_path):
    assert parse_recipe(BASE).baselines == list(BASELINES) == ["candidates", "warmstart", "untrained"]
    rec = parse_recipe({**BASE, "baselines": ["untrained", "candidates"], "warm_start": {"demos": 4}})
    assert plan(rec, tmp_path / "out", 1).baselines == ("untrained", "candidates")
    with pytest.raises(SimrlError, match="baseline 'warmstart': use candidates, warmstart with a run's warmstart.pt"):
        evaluate_baseline(rec, "warmstart", 0, tmp_path / "b", worlds=tmp_path / "worlds")


def test_ablate_compares_the_trainers_that_say_so(tmp_path):
    from simrl.experiment.ablate import run_ablation

    assert [k for k, t in TRAINERS.items() if t.ablate] == ["embedded", "trl"]
    with pytest.raises(SimrlError, match="trainer.kind 'verl': ablations run the embedded or trl trainer"):
        run_ablation(parse_recipe({**LLM, "trainer": {"kind": "verl"}}), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything is written
