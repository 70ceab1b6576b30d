"""Decision points: a cached decision equals a freshly computed one; memoised candidates equal candidates computed
from scratch; the batched scorer gives the unbatched probabilities (1e-6); the kind-first exploration mixture is
a distribution with finite gradients."""

from __future__ import annotations

import array
import asyncio

import pytest
import torch

from simrl.envs.base import make
from simrl.policies import candidates
from simrl.policies.action_keys import action_key
from simrl.policies.decisions import KINDS, DecisionCache, decision_fields, encode_decision, kind_of
from simrl.policies.features import Hasher
from simrl.policies.scorer import ScorerPolicy
from simrl.rollout import rollout
from simrl.types import Action
from simrl.world import load_tasks


@pytest.fixture(scope="module")
def states(tiny_world):
    """Every decision point of sampled episodes of an untrained policy on the records tools (with faults)."""
    tasks = [t for t in load_tasks(tiny_world) if t.type == "records"][:8]
    env = lambda: make("mcp-world", world=tiny_world, transport="inprocess", fault_rate=0.3)  # noqa: E731
    trajs = asyncio.run(rollout(env, ScorerPolicy(seed=3, explore_kinds=0.5), tasks, max_turns=8, seed=11))
    views = {t.task_id: t.policy_view() for t in tasks}
    out = [(views[x.task_id], x.initial, x.turns[:i], x.turns[i].action) for x in trajs for i in range(len(x.turns))]
    assert len(out) > 20
    return out


def test_cached_decisions_equal_fresh_ones(states):
    cache = DecisionCache(Hasher(1 << 12))
    for view, initial, turns, _ in states + states:  # the second pass is served from the cache
        got = cache.get(view, initial, turns)
        fresh = encode_decision(Hasher(1 << 12), got.key, view, initial, list(turns))
        assert decision_fields(got) == decision_fields(fresh)
    assert cache.hits >= len(states) and cache.misses <= len(states)


def test_candidates_of_the_same_text_share_its_token_ids(states):
    texts: dict = {}
    hasher = Hasher(1 << 12)
    decisions = [encode_decision(hasher, (), v, i, list(t), texts) for v, i, t, _ in states]
    cands = [(c, b) for d in decisions for c, b in zip(d.cands, d.cand_bytes)]
    # calls with other values of the same shapes read the same text: encoded once, one object per text
    assert len({id(c) for c, _ in cands}) == len({c for c, _ in cands}) < len({id(a) for d in decisions for a in d.actions})
    assert all(b == array.array("q", c).tobytes() for c, b in cands)


def test_decisions_outlive_a_step_but_its_episodes_do_not(states):
    cache = DecisionCache(Hasher(1 << 12))
    first = [cache.get(v, i, t) for v, i, t, _ in states]
    cache.end_step()
    assert not (cache._turn_keys or cache._prefix_keys or cache._initial_keys)  # no episode object held
    copies = [(dict(v), i.model_copy(deep=True), [t.model_copy(deep=True) for t in ts]) for v, i, ts, _ in states]
    misses = cache.misses
    assert [cache.get(*c) for c in copies] == first and cache.misses == misses  # met again: the same objects
    cache.end_step(keep=len(first) - 1)  # more than kept: all forgotten
    assert cache.get(*copies[0]) is not first[0] and cache.misses == misses + 1
    cache.clear()
    assert not cache._decisions and not cache._turn_keys


def test_memoised_candidates_equal_candidates_from_scratch(states):
    # every prefix of the sampled episodes, in episode order (the memos warm as in training), twice
    warm = [candidates.tagged_candidates(v, i, t) for v, i, t, _ in states + states]
    for (view, initial, turns, _), got in zip(states + states, warm):
        candidates.clear_memos()
        fresh = candidates.tagged_candidates(view, initial, turns)
        assert [(a.model_dump_json(), tags) for a, tags in got] == [(a.model_dump_json(), tags) for a, tags in fresh]
        copies = [Action.model_validate_json(a.model_dump_json()) for a, _ in fresh]  # not memoised: keyed anew
        assert [action_key(a) for a, _ in got] == [action_key(a) for a in copies]


@pytest.mark.parametrize("explore", [0.0, 0.4])
def test_batched_log_probs_equal_unbatched(states, explore):
    policy = ScorerPolicy(seed=5, temperature=1.5, explore_kinds=explore)
    decisions = [policy.decisions.get(v, i, t) for v, i, t, _ in states]
    actions = [a for *_, a in states]
    logp, mask, full = policy.decision_log_probs(decisions, actions, full=True)
    assert bool(mask.all())  # the policy acted among these candidates
    for row, (d, action) in enumerate(zip(decisions, actions)):
        with torch.no_grad():
            s = policy.module.score_one(d.state, d.cands) / policy.temperature
            one = policy.log_mix(s.unsqueeze(0), torch.tensor([d.kinds]))[0]
        assert torch.allclose(full[row, :len(d.actions)], one, atol=1e-6)
        assert abs(float(logp[row].detach()) - float(one[d.target(action)])) < 1e-6


def test_kind_mixture_is_a_distribution_that_explores_every_kind():
    policy = ScorerPolicy(explore_kinds=0.3)
    scores = torch.tensor([[8.0, 0.0, -8.0, 1.0, float("-inf")], [0.0, 0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    kinds = torch.tensor([[0, 1, 2, 4, -1], [0, 0, 0, 0, 4]])
    logp = policy.log_mix(scores, kinds)
    probs = logp.detach().exp()
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-6)
    # row 0: four kinds present, so each gets at least 0.3 / 4 whatever its score (the -8 'repeat' included)
    assert float(probs[0, 2]) >= 0.3 / 4 - 1e-6 and float(probs[0, 4]) == 0.0
    # row 1: two kinds (call x4, answer x1): the answer gets 0.7 * 1/5 + 0.3 / 2
    assert abs(float(probs[1, 4]) - (0.7 / 5 + 0.15)) < 1e-6
    logp[torch.isfinite(logp)].sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert [KINDS[kind_of(t)] for t in (("tag_repeat_last", "tag_after_error"), ("tag_answer",), ("x",))] == \
        ["repeat", "answer", "call"]


def test_a_decision_holds_each_candidate_its_text_ids_and_kind(states):
    """encode_decision (memo shared across decisions) against the definition, candidate by candidate."""
    from simrl.policies.candidates import keyed_candidates
    from simrl.policies.features import action_text, state_text

    hasher, texts = Hasher(1 << 12), {}
    for view, initial, turns, _ in states:
        d = encode_decision(hasher, ("k",), view, initial, list(turns), texts)
        keyed = keyed_candidates(view, initial, list(turns))
        assert d.actions == tuple(a for _, a, _ in keyed) and isinstance(d.actions, tuple)
        assert d.index == {k: i for i, (k, _, _) in enumerate(keyed)} and list(d.index) == [k for k, _, _ in keyed]
        assert d.kinds == tuple(kind_of(tags) for _, _, tags in keyed)
        assert d.cands == [tuple(hasher.ids(action_text(a, tags))) for _, a, tags in keyed]
        assert d.cand_bytes == [array.array("q", c).tobytes() for c in d.cands]
        assert d.state == hasher.ids(state_text(view, initial, list(turns))) and d.key == ("k",)


def _defined_candidates(view, initial, turns):
    """keyed_candidates by its rules written out: each source added in turn (recovery, answers, the tools' calls one of
    each tool at a time, the frontier), at most MAX_CANDIDATES, then the called-before / same-as-last tags."""
    import itertools

    tools = {t.name: t for t in candidates.read_tools(initial.tools)}
    prompt = view.get("prompt", initial.text)
    vals = candidates._values(tools, prompt, turns)
    pool = {}

    def add(keyed, cap):
        n = 0
        for k, action, tags in keyed:
            if n >= cap or len(pool) >= candidates.MAX_CANDIDATES:
                return
            if k not in pool:
                pool[k] = (action, tags)
                n += 1

    add(candidates._recovery(tools, turns), candidates.MAX_CANDIDATES)
    add(candidates._answers(tools, turns, prompt), candidates.MAX_ANSWERS)
    per_tool = [candidates._calls(tool, vals) for tool in tools.values()]
    add((c for row in itertools.zip_longest(*per_tool) for c in row if c is not None), candidates.MAX_CANDIDATES)
    add(candidates._frontier_scan(tools, turns), candidates.MAX_CANDIDATES)  # every tool scanned, no shortcut
    assert not candidates.candidate_pages.last_texts(turns)  # records: JSON results only
    done = {action_key(t.action) for t in turns}
    last = action_key(turns[-1].action) if turns else None
    return [(k, a, tags + (("tag_called_before",) if k in done else ()) + (("tag_same_as_last",) if k == last else ()))
            for k, (a, tags) in pool.items()]


def test_candidates_equal_their_definition_candidate_by_candidate(states):
    # memoised by the results' texts (no walk of the values read), the tools' calls interleaved once per memo entry,
    # no frontier scan while every result is JSON: the same candidates, tags and order as the rules written out
    candidates.clear_memos()
    for view, initial, turns, _ in states + states:  # the second pass from the memos
        got = candidates.keyed_candidates(view, initial, turns)
        assert [(k, a.model_dump_json(), tags) for k, a, tags in got] == \
            [(k, a.model_dump_json(), tags) for k, a, tags in _defined_candidates(view, initial, turns)]
    assert any("tag_called_before" in tags for v, i, t, _ in states for _, _, tags in candidates.keyed_candidates(v, i, t))


def _defined_options(tool, param, vals):
    """candidates._options and _Values.matching / like as first written (every value read scanned, all options
    listed, then the first MAX_VALUES distinct)."""
    import itertools

    from simrl.policies.action_keys import freeze
    from simrl.policies.features import id_prefix, is_date, tokens

    def matching(p):
        words = tokens(p)
        hits = [(k, v) for k, v in vals.seen if tokens(k) & words]
        typed = [(k, v) for k, v in hits if (x := id_prefix(v)) is not None
                 and any(x.startswith(w) or w.startswith(x) for w in words if len(w) > 2)]
        return typed or hits

    def like(example):
        if isinstance(example, int | float):
            return [(k, v) for k, v in vals.prompt + vals.seen if type(v) is type(example)]
        if is_date(example):
            return [(k, v) for k, v in vals.prompt + vals.seen if is_date(v)]
        if (x := id_prefix(example)) is not None:
            return [(k, v) for k, v in vals.seen if id_prefix(v) == x]
        return [(k, v) for k, v in vals.prompt if k == "prompt_span"]

    spec, kind = tool.params.get(param, {}), tool.kind(param)
    out = []
    if isinstance(spec.get("enum"), list):
        out = [(v, "enum") for v in spec["enum"]]
    elif kind == "string":
        seen = [(v, f"key_{k}") for k, v in matching(param) if isinstance(v, str)]
        prompt = [(str(v), k) for k, v in vals.prompt if k != "prompt_number"]
        out = [(v, "literal") for v in tool.literals]
        out += [x for pair in itertools.zip_longest(seen, prompt) for x in pair if x is not None]
        if not seen:
            out += [(v, "key_link") for k, v in vals.seen if k == "link" and isinstance(v, str)]
    elif kind in ("integer", "number"):
        out = [(v, k) for k, v in vals.prompt if k == "prompt_number"]
        out += [(v, f"key_{k}") for k, v in matching(param) if isinstance(v, int | float)]
    elif kind == "object":
        for key, example in vals.examples:
            out += [({key: v}, f"example_{key}_{k}") for k, v in like(example)[:3]]
    seen, unique = set(), []
    for v, tag in out:
        if (f := repr(freeze(v))) not in seen:
            seen.add(f)
            unique.append((v, tag))
    return unique[:candidates.MAX_VALUES], matching


def test_options_equal_their_definition(states):
    # each distinct key's words and each id prefix tested once, options read only up to MAX_VALUES distinct values,
    # like() taken lazily: the same options, matches and values of a kind as scanning every value read
    tried = 0
    for view, initial, turns, _ in states:
        tools = {t.name: t for t in candidates.read_tools(initial.tools)}
        vals = candidates._values(tools, view.get("prompt", initial.text), turns)
        for tool in tools.values():
            for param in tool.params:
                want, matching = _defined_options(tool, param, vals)
                assert candidates._options(tool, param, vals) == want
                assert vals.matching(param) == matching(param)
                tried += bool(vals.matching(param))
        for _, example in vals.examples:
            assert vals.like(example) == list(vals.like_iter(example))
    assert tried > 100
