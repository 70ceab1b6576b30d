"""The scorer's ``init_scale``: the embedding tables' initial draws scaled, everything else as at the default."""

from __future__ import annotations

import pytest
import torch

from simrl.policies.scorer import ScorerPolicy


def test_init_scale_scales_only_the_tables_and_round_trips(tmp_path):
    base, zero, half = (ScorerPolicy(dim=8, buckets=64, seed=3, init_scale=s) for s in (1.0, 0.0, 0.5))
    for a, b, c in zip(base.module.parameters(), zero.module.parameters(), half.module.parameters()):
        table = any(a is t for t in base.tables)
        assert torch.equal(b, torch.zeros_like(a)) if table else torch.equal(a, b)
        assert torch.equal(c, a * 0.5) if table else torch.equal(a, c)
    # a token no gradient reached adds no direction of its own to a bag's mean (only dilutes it), at every seed
    with torch.no_grad():
        zero.module.state_bag.weight[1:3] = torch.randn(2, 8)
    bag = zero.module.state_bag
    seen, with_unseen = bag(torch.tensor([[1, 2]])), bag(torch.tensor([[1, 2, 9]]))
    assert torch.allclose(with_unseen, seen * 2 / 3)
    drawn = base.module.state_bag
    assert not torch.allclose(drawn(torch.tensor([[1, 2, 9]])), drawn(torch.tensor([[1, 2]])) * 2 / 3)
    assert "init_scale" not in base.config and zero.config["init_scale"] == 0.0  # default checkpoints unchanged
    half.save(tmp_path / "p.pt")
    again = ScorerPolicy.load(tmp_path / "p.pt")
    assert again.init_scale == 0.5 and all(torch.equal(x, y) for x, y in zip(again.module.parameters(),
                                                                               half.module.parameters()))
    with pytest.raises(ValueError, match="init_scale"):
        ScorerPolicy(init_scale=1.5)
