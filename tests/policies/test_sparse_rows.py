"""Row-sparse Adam and row gradients (simrl.policies.sparse_rows): bitwise the numbers of dense training."""

from __future__ import annotations

import asyncio
import copy
import random

import pytest
import torch
from torch import nn

from simrl.envs.base import make
from simrl.policies import sparse_rows
from simrl.policies.scorer import ScorerPolicy
from simrl.policies.sparse_rows import RowGrads, RowSparseAdam, clip_grad_norm_, make_adam
from simrl.rollout import rollout
from simrl.trainers.embedded import grpo_update
from simrl.world import load_tasks

# (rows, dim) of each table: odd row counts, row lengths stepped by rows (64, 128) and densely (7, 33)
SHAPES = [(37, 64), (1001, 64), (515, 128), (41, 7), (300, 33)]


def _params(seed: int) -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    tables = [nn.Parameter(torch.randn(n, d, generator=gen)) for n, d in SHAPES]
    return [*tables, nn.Parameter(torch.randn(5, 3, generator=gen))]  # and a dense parameter


def _sparse_grad(rng: random.Random, gen: torch.Generator, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.tensor(sorted(rng.sample(range(n), rng.randint(1, min(n, 40)))), dtype=torch.long)
    values = torch.randn(len(rows), d, generator=gen) * rng.choice([1e-4, 1.0, 30.0])
    if rng.random() < 0.2:
        values[0] = 0.0  # a row read with an exactly zero gradient
    return rows, values


def _assert_same(opt_a: torch.optim.Optimizer, opt_b: torch.optim.Optimizer, pa: list, pb: list) -> None:
    for a, b in zip(pa, pb):
        assert torch.equal(a, b)
        sa, sb = opt_a.state[a], opt_b.state[b]
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _set_gradients(rng, gen, dense_params, sparse_params, sparse) -> None:
    """The same random gradients on both sets: each table's by rows (dense: written into zeros), the last parameter's dense."""
    for table, dense_table, (n, d) in zip(sparse_params, dense_params, SHAPES):
        rows, values = _sparse_grad(rng, gen, n, d)
        dense_table.grad = torch.zeros(n, d).index_copy_(0, rows, values)
        sparse.set_rows(table, rows, values)
    g = torch.randn(5, 3, generator=gen)
    dense_params[-1].grad, sparse_params[-1].grad = g.clone(), g.clone()


def test_row_sparse_adam_is_bitwise_dense_adam_over_many_steps():
    dense_params, sparse_params = _params(0), _params(0)
    dense = torch.optim.Adam(dense_params, lr=0.003, fused=True)
    sparse = RowSparseAdam(sparse_params, lr=0.003, tables=sparse_params[:-1])
    assert sparse.fused
    rng, gen = random.Random(0), torch.Generator().manual_seed(1)
    for step in range(60):
        _set_gradients(rng, gen, dense_params, sparse_params, sparse)
        if step % 7 == 3:  # a step where one table had no gradient (not in the graph): no step for it
            dense_params[0].grad = sparse_params[0].grad = None
        dense.step()
        sparse.step()
        _assert_same(dense, sparse, dense_params, sparse_params)
    assert sparse.state_dict()["param_groups"] == dense.state_dict()["param_groups"]


@pytest.mark.parametrize("max_norm", [0.05, 1e6, float("nan")])
def test_clipping_by_rows_is_bitwise_torchs_clipping(max_norm):
    """Norm and clipped gradients as torch.nn.utils.clip_grad_norm_ gives them, over tables given by rows (after
    earlier steps, so the persistent gradients held other rows before) and a dense parameter; scaled down,
    left as they are (scale 1), and a NaN scale (applied everywhere, as torch does)."""
    dense_params, sparse_params = _params(5), _params(5)
    sparse = RowSparseAdam(sparse_params, lr=0.01, tables=sparse_params[:-1])
    rng, gen = random.Random(5), torch.Generator().manual_seed(5)
    for _ in range(3 if max_norm == max_norm else 1):  # NaN: once (a NaN gradient stays in the persistent one)
        _set_gradients(rng, gen, dense_params, sparse_params, sparse)
        want = torch.nn.utils.clip_grad_norm_(dense_params, max_norm)
        got = clip_grad_norm_(sparse_params, max_norm, sparse)
        assert torch.equal(want, got) or (want.isnan() and got.isnan())
        for a, b in zip(dense_params, sparse_params):
            assert torch.equal(a.grad, b.grad) or torch.equal(a.grad.isnan(), b.grad.isnan())
        sparse.step()


def test_norms_over_rows_are_bitwise_torchs_with_one_thread(one_thread):
    """With one thread the tables' norms are taken over their rows (compact_norms' probe agrees here), and clipping
    still gives torch's norm and gradients bitwise: many steps of sparse gradients of several magnitudes (rows of 64
    and 128 elements; 7 and 33: not aligned, taken whole)."""
    assert sparse_rows.compact_norms()
    dense_params, sparse_params = _params(11), _params(11)
    sparse = RowSparseAdam(sparse_params, lr=0.01, tables=sparse_params[:-1])
    rng, gen = random.Random(11), torch.Generator().manual_seed(11)
    for _ in range(40):
        _set_gradients(rng, gen, dense_params, sparse_params, sparse)
        for max_norm in (1e6, 0.05):  # left as they are, then scaled down
            want = torch.nn.utils.get_total_norm([p.grad for p in dense_params])
            if max_norm == 0.05:
                want = torch.nn.utils.clip_grad_norm_(dense_params, max_norm)
            got = clip_grad_norm_(sparse_params, max_norm, sparse)
            assert torch.equal(want, got)
        for a, b in zip(dense_params, sparse_params):
            assert torch.equal(a.grad, b.grad)
        sparse.step()


def test_norms_are_taken_whole_unless_the_probe_agrees(one_thread, monkeypatch):
    monkeypatch.setattr(sparse_rows, "_COMPACT", [False])
    assert not sparse_rows.compact_norms()
    params = _params(2)
    sparse = RowSparseAdam(params, lr=0.01, tables=params[:-1])
    rng, gen = random.Random(2), torch.Generator().manual_seed(2)
    _set_gradients(rng, gen, _params(2), params, sparse)
    seen = []
    real = torch.nn.utils.get_total_norm
    monkeypatch.setattr(torch.nn.utils, "get_total_norm", lambda grads, *a: seen.append(grads) or real(grads, *a))
    clip_grad_norm_(params, 0.05, sparse)
    assert [g.shape for g in seen[0]] == [p.shape for p in params]  # every gradient whole
    torch.set_num_threads(2)
    monkeypatch.setattr(sparse_rows, "_COMPACT", [True])
    assert not sparse_rows.compact_norms()  # several threads: whole, whatever the probe


def test_a_resumed_row_sparse_adam_continues_as_dense_adam():
    """A checkpoint's state (dense Adam's or row-sparse Adam's) loads either way; stepping goes on identically,
    the rows with a nonzero moment (a -0.0 included) still stepped though no gradient reaches them again."""
    dense_params, sparse_params = _params(3), _params(3)
    dense = torch.optim.Adam(dense_params, lr=0.01, fused=True)
    rng, gen = random.Random(3), torch.Generator().manual_seed(3)
    for _ in range(5):
        for p, (n, d) in zip(dense_params, SHAPES):
            rows, values = _sparse_grad(rng, gen, n, d)
            p.grad = torch.zeros(n, d).index_copy_(0, rows, values)
        dense_params[-1].grad = torch.randn(5, 3, generator=gen)
        dense.step()
    dense.state[dense_params[0]]["exp_avg"][2, 0] = -0.0  # a moment decayed to -0.0 in a row otherwise 0
    dense.state[dense_params[0]]["exp_avg_sq"][2] = 0.0
    for p, q in zip(dense_params, sparse_params):
        q.data.copy_(p.data)
    sparse = make_adam(sparse_params, 0.5, sparse_params[:-1])
    sparse.load_state_dict(copy.deepcopy(dense.state_dict()))  # as from a checkpoint: no tensor shared
    again = make_adam(_params(3), 0.5, [])
    again.load_state_dict(sparse.state_dict())  # and back: the same format
    for _ in range(8):
        for table, dense_table, (n, d) in zip(sparse_params, dense_params, SHAPES):
            rows, values = _sparse_grad(rng, gen, n, d)
            dense_table.grad = torch.zeros(n, d).index_copy_(0, rows, values)
            sparse.set_rows(table, rows, values)
        dense_params[-1].grad = sparse_params[-1].grad = torch.randn(5, 3, generator=gen)
        dense.step()
        sparse.step()
        _assert_same(dense, sparse, dense_params, sparse_params)


def test_row_grads_give_the_dense_outputs_and_gradient():
    gen = torch.Generator().manual_seed(0)
    for dim in (64, 7):
        bag = nn.EmbeddingBag(5000, dim, mode="mean")
        ids = torch.randint(0, 5000, (300,), generator=gen)
        ids[:40] = ids[40:80]  # ids read more than once
        offsets = torch.tensor([0, 3, 50, 51, 200])
        out = bag(ids, offsets)
        weights = torch.randn(out.shape, generator=gen)
        (out * weights).sum().backward()
        dense_grad, bag.weight.grad = bag.weight.grad, None
        optimizer = RowSparseAdam(bag.parameters(), lr=0.1, tables=[bag.weight])
        rows = RowGrads(optimizer)
        compact = rows.bag(bag, ids, offsets)
        assert torch.equal(compact, out)
        with pytest.raises(ValueError, match="read twice"):
            rows.bag(bag, ids, offsets)
        (compact * weights).sum().backward()
        rows.into()
        assert bag.weight.grad is not None and torch.equal(bag.weight.grad, dense_grad)


@pytest.fixture
def rollout_step(tiny_world):
    tasks = [t for t in load_tasks(tiny_world) if t.type == "records"][:6]
    env = lambda: make("mcp-world", world=tiny_world, transport="inprocess", fault_rate=0.2)  # noqa: E731
    policy = ScorerPolicy(seed=1, explore_kinds=0.3)
    trajs = asyncio.run(rollout(env, policy, tasks, max_turns=6, seed=5))
    views = {t.task_id: t.policy_view() for t in tasks}
    decisions = [policy.decisions_of(t, views[t.task_id]) for t in trajs]
    advantages = [[(-1.0) ** i * (1 + t) / 3 for t in range(len(traj.turns))] for i, traj in enumerate(trajs)]
    return trajs, decisions, advantages


@pytest.fixture
def one_thread():
    """One intra-op thread, as the embedded trainer runs (train_arm)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_grpo_updates_by_rows_are_bitwise_the_dense_ones(rollout_step, one_thread):
    trajs, decisions, advantages = rollout_step
    policies = [ScorerPolicy(seed=1, explore_kinds=0.3) for _ in range(2)]
    reference = ScorerPolicy(seed=2, explore_kinds=0.3)
    dense = torch.optim.Adam(policies[0].module.parameters(), lr=0.01, fused=True)
    sparse = make_adam(policies[1].module.parameters(), 0.01, policies[1].tables)
    for _ in range(4):
        outs = [grpo_update(p, opt, trajs, advantages, decisions, grad_clip=0.5, entropy_coef=0.01,
                            reference=reference, kl_coef=0.04) for p, opt in zip(policies, (dense, sparse))]
        assert outs[0] == outs[1] and outs[0]["grad_norm"] > 0.5  # clipped
    for a, b in zip(policies[0].module.parameters(), policies[1].module.parameters()):
        assert torch.equal(a, b)


