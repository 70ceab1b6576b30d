"""Credit assignment: GRPO's episode advantages and GiGPO's step-level advantages on hand-computed examples,
and the credit landing on the turn that decided the outcome."""

from __future__ import annotations

import doctest

import pytest

from simrl.trainers import credit
from simrl.trainers.credit import group_advantages, step_advantages, turn_advantages


def test_doctests():
    assert doctest.testmod(credit).failed == 0


def test_step_advantages_hand_computed():
    # a group of 3 from one state s0; two reach s1 after a fault, one retries (success 1), one answers (0);
    # the third never meets the fault and answers from s2 (success 1). gamma 0.5.
    keys = [["s0", "s1", "s1b"], ["s0", "s1"], ["s0", "s2"]]
    rewards = [[0.0, 0.0, 1.0], [0.0, 0.0], [0.0, 1.0]]
    adv = step_advantages(keys, rewards, [True, True, True], 0.5)
    # s0: returns 0.25, 0, 0.5 -> mean .25, sample std .25 -> 0, -1, +1
    assert adv[0][0] == pytest.approx(0.0, abs=1e-5) and adv[1][0] == pytest.approx(-1.0, abs=1e-4)
    assert adv[2][0] == pytest.approx(1.0, abs=1e-4)
    # s1: returns 0.5 (retried) and 0 (answered) -> +-0.7071; s1b and s2 are met once -> 0
    assert adv[0][1] == pytest.approx(0.7071, abs=1e-4) and adv[1][1] == pytest.approx(-0.7071, abs=1e-4)
    assert adv[0][2] == 0.0 and adv[2][1] == 0.0


def test_an_environment_failure_joins_no_step_group():
    adv = step_advantages([["s0"], ["s0"], ["s0"]], [[1.0], [0.0], [5.0]], [True, True, False], 0.9)
    assert adv[2] == [0.0] and adv[0][0] == pytest.approx(0.7071, abs=1e-4)


def _net_credit(keys, actions, adv):
    """Sum of the advantages given to each (state, action): what the policy gradient pushes on."""
    out: dict = {}
    for ks, acts, row in zip(keys, actions, adv):
        for k, a, v in zip(ks, acts, row):
            out[(k, a)] = out.get((k, a), 0.0) + v
    return out


def test_credit_lands_on_the_turn_that_decided():
    """Four episodes of one task: all list page 1 (s0 -> s1, cursor shown). Two continue to page 2 and answer
    right; two answer from page 1 and fail; one of those first repeats the list call (a wasted turn). The only
    decision that matters is continue vs answer at s1."""
    keys = [["s0", "s1", "s2"], ["s0", "s1", "s2"], ["s0", "s1"], ["s0", "s1", "s1"]]
    actions = [["list", "continue", "answer"], ["list", "continue", "answer"], ["list", "answer"],
               ["list", "repeat", "answer"]]
    rewards = [[0, 0, 1.0], [0, 0, 1.0], [0, 0.0], [0, 0, 0.0]]
    valid = [True] * 4
    episode = group_advantages([sum(r) for r in rewards], valid)
    lengths = [len(k) for k in keys]
    for step in (None, step_advantages(keys, rewards, valid, 0.95)):
        adv = turn_advantages(episode, step, lengths)
        net = _net_credit(keys, actions, adv)
        assert net[("s0", "list")] == pytest.approx(0.0, abs=1e-4)  # every episode did it: no credit
        assert net[("s1", "continue")] > 0 > net[("s1", "answer")]
        assert net[("s1", "repeat")] < 0
    gigpo = _net_credit(keys, actions, turn_advantages(episode, step_advantages(keys, rewards, valid, 0.95),
                                                       lengths))
    grpo = _net_credit(keys, actions, turn_advantages(episode, None, lengths))
    # the step level adds credit at the decisive state beyond what the episode level gives it
    assert gigpo[("s1", "continue")] > grpo[("s1", "continue")]
