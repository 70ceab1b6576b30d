"""simrl.memo.by_repr: a copy made of the same objects is found by identity, anything else by its ``repr``."""

from __future__ import annotations

from simrl.memo import by_repr


class Schema:
    """A value whose ``repr`` counts how often it is taken (the memo's expensive path)."""

    reprs = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        Schema.reprs += 1
        return f"Schema({self.name!r})"


def test_copied_list_of_dicts_found_by_identity_of_their_values():
    calls = []
    names = by_repr(lambda tools: calls.append(1) or [t["function"].name for t in tools])
    a, b = Schema("a"), Schema("b")
    tools = [{"type": "function", "function": a}, {"type": "function", "function": b}]
    assert names(tools) == ["a", "b"]
    reprs = Schema.reprs
    episode = [dict(t) for t in tools]  # what an environment hands each episode: new list, new dicts, same schemas
    assert names(episode) == ["a", "b"] and len(calls) == 1
    assert Schema.reprs == reprs  # no repr taken: found by identity
    # the same keys in another order: another repr, so another value for the memo (computed again)
    swapped = [{"function": t["function"], "type": t["type"]} for t in tools]
    assert names(swapped) == ["a", "b"] and len(calls) == 2 and Schema.reprs > reprs
    # equal reprs of other objects: found by repr, not computed again
    assert names([{"type": "function", "function": Schema("a")}, {"type": "function", "function": Schema("b")}]) \
        == ["a", "b"] and len(calls) == 2
    # a changed value: computed again
    assert names([{"type": "function", "function": a}, {"type": "function", "function": Schema("c")}]) \
        == ["a", "c"] and len(calls) == 3


def test_dicts_with_other_keys_than_strings_are_not_taken_apart():
    calls = []
    size = by_repr(lambda items: calls.append(1) or repr(items))
    one = [{1: "x"}]
    assert size(one) == "[{1: 'x'}]"
    assert size([{1.0: "x"}]) == "[{1.0: 'x'}]" and len(calls) == 2  # 1.0 == 1 as keys, but another value
    assert size([{True: "x"}]) == "[{True: 'x'}]" and len(calls) == 3
    assert size(one) == "[{1: 'x'}]" and len(calls) == 3  # the same list: by identity
