"""Continuation tokens are a function of the call, not of the episode: equal histories give equal states."""

from __future__ import annotations

from simrl.perturb.taxonomy import PerturbContext
from simrl.types import ToolCall


def test_the_same_call_gets_the_same_token_in_every_episode():
    call = ToolCall(name="list_members", arguments={"org_id": "organization:000111"})
    a = PerturbContext(call=call, turn=1, key="0:7:1001:1:0:forced_pagination")
    b = PerturbContext(call=call, turn=3, key="0:7:2002:3:0:forced_pagination")  # another episode, another turn
    assert a.token() == b.token() and a.token().startswith("simrl-cont-")
    other = PerturbContext(call=ToolCall(name="list_members", arguments={"org_id": "organization:000112"}),
                           key="0:7:1001:1:0:forced_pagination")
    partial = PerturbContext(call=call, key="0:7:1001:1:0:partial_response")
    assert len({a.token(), other.token(), partial.token()}) == 3  # another query or another perturbation: another token
