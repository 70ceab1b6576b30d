"""GRPO's KL penalty towards the warm start (``trainer.kl_coef``): a restoring force when no group has a signal."""

from __future__ import annotations

import asyncio

import torch

from simrl.envs.base import make
from simrl.policies.scorer import ScorerPolicy
from simrl.policies.sparse_rows import make_adam
from simrl.rollout import rollout
from simrl.trainers.embedded import grpo_update
from simrl.world import load_tasks


def _setup(tiny_world):
    tasks = [t for t in load_tasks(tiny_world) if t.type == "records"][:6]
    env = lambda: make("mcp-world", world=tiny_world, transport="inprocess", fault_rate=0.2)  # noqa: E731
    # a policy far from the reference: other weights, sharper scores
    policy, reference = ScorerPolicy(seed=1, temperature=0.1, explore_kinds=0.3), ScorerPolicy(seed=2, explore_kinds=0.3)
    trajs = asyncio.run(rollout(env, policy, tasks, max_turns=6, seed=5))
    views = {t.task_id: t.policy_view() for t in tasks}
    decisions = [policy.decisions_of(t, views[t.task_id]) for t in trajs]
    zero = [[0.0] * len(t.turns) for t in trajs]  # every group failed alike: no advantage anywhere
    return policy, reference, trajs, decisions, zero


def test_zero_advantages_take_no_step_without_the_penalty(tiny_world):
    policy, reference, trajs, decisions, zero = _setup(tiny_world)
    before = [p.detach().clone() for p in policy.module.parameters()]
    out = grpo_update(policy, make_adam(policy.module.parameters(), 0.01), trajs, zero, decisions, grad_clip=1.0,
                      reference=reference)
    assert out["kl_warm_start"] > 0.01 and out["grad_norm"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.module.parameters()))


def test_the_penalty_pulls_the_policy_towards_the_reference(tiny_world):
    policy, reference, trajs, decisions, zero = _setup(tiny_world)
    optimizer = make_adam(policy.module.parameters(), 0.001)
    kls = [grpo_update(policy, optimizer, trajs, zero, decisions, grad_clip=1.0, reference=reference,
                       kl_coef=1.0)["kl_warm_start"] for _ in range(15)]
    assert all(k == k for k in kls)  # finite (padding contributes 0, never NaN)
    assert kls[-1] < 0.5 * kls[0], kls
    assert all(torch.isfinite(p).all() for p in policy.module.parameters())
