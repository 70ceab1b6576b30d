"""Decision points of the scorer policy, encoded once per distinct state and shared by acting and training.

A *decision point* is the state before a turn: the task's prompt, the tool list and the history so far (each
earlier turn's action and observation). Its :class:`Decision` holds what :class:`simrl.policies.scorer.ScorerPolicy`
needs there: the candidate actions (:func:`simrl.policies.candidates.tagged_candidates`), the kind of each
candidate (:data:`KINDS`), and the hashed token ids of the state and of every candidate
(:class:`simrl.policies.features.Hasher`). :class:`DecisionCache` computes a decision once per state and returns
it again for

* the other episodes of a GRPO group that reach the same state (all of them at the first turn, most of them at
  the next few: the same task, the same warm-started policy);
* the policy-gradient update, which scores every turn of the step's episodes again (before, each turn's
  candidates were generated and encoded twice: when acting and when training).

The state's identity (:attr:`Decision.key`) is also GiGPO's *anchor state* (Feng et al., NeurIPS 2025,
arXiv:2505.10978, §3.2): turns of a group that start from the same environment state, whose actions are
compared with each other (:func:`simrl.trainers.credit.step_advantages`).

Caching changes nothing a policy computes: a decision is a pure function of its key (a test checks that the
cached and freshly computed decisions are equal).
"""

from __future__ import annotations

import array
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from simrl.memo import by_repr
from simrl.policies.candidates import action_key, keyed_candidates
from simrl.policies.features import Hasher, action_text, state_text
from simrl.types import Action, Observation, Turn

KINDS = ("call", "continue", "repeat", "drop", "answer")
"""Candidate kinds, from a candidate's provenance tags (:mod:`simrl.policies.candidates`): a tool call built from
the episode's values, the last call continued with a value of its result (a cursor), the last call repeated, the
last failed call without an optional argument, a final answer. Exploration over kinds
(:meth:`simrl.policies.scorer.ScorerPolicy.log_mix`) draws a kind before a value."""
_KIND_OF_TAG = {"tag_continue": 1, "tag_repeat_last": 2, "tag_drop_arg": 3, "tag_answer": 4}
MAX_ENTRIES = 50_000
"""Most decisions kept; the cache is emptied when it is full (and by the trainer after every update)."""
KEEP_ENTRIES = 4_096
"""Most decisions kept from one training step to the next (:meth:`DecisionCache.end_step`; about 9 KiB each)."""
_tools_json = by_repr(lambda tools: json.dumps(tools, sort_keys=True, default=str))
"""An initial observation's tools as canonical JSON (part of a state key), once per tool list (:mod:`simrl.memo`: each
episode's observation holds a copy of the environment's list)."""


def kind_of(tags: tuple[str, ...]) -> int:
    """The index in :data:`KINDS` of a candidate with provenance ``tags`` (``call`` unless a tag says otherwise).

    >>> KINDS[kind_of(("tag_continue", "tag_continue_cursor"))], KINDS[kind_of(("tag_call_get_record",))]
    ('continue', 'call')
    """
    for tag in tags:
        if (k := _KIND_OF_TAG.get(tag)) is not None:
            return k
    return 0


@dataclass(frozen=True, eq=False)
class Decision:
    """One encoded decision point.

    Attributes:
        key: the state's identity (prompt, tools, and each earlier turn's action key and observation).
        actions: the K candidates, in :func:`~simrl.policies.candidates.tagged_candidates` order.
        index: ``action_key(candidate) -> position`` in ``actions``.
        kinds: ``[K]`` index in :data:`KINDS` of each candidate.
        state: token ids of the state text (:func:`~simrl.policies.features.state_text`).
        cands: ``[K]`` token ids of each candidate's text (:func:`~simrl.policies.features.action_text`).
        cand_bytes: ``[K]`` the same ids as int64 bytes (``array("q", ids).tobytes()``; one shared object per text,
            its hash computed once), what a batch packs.
    """

    key: tuple
    actions: tuple[Action, ...]
    index: dict[str, int]
    kinds: tuple[int, ...]
    state: list[int]
    cands: list[tuple[int, ...]]
    cand_bytes: list[bytes]

    def target(self, action: Action) -> int:
        """The position of ``action`` among the candidates, -1 when it is not one of them."""
        return self.index.get(action_key(action), -1)

    @functools.cached_property
    def texts(self) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
        """``(distinct, which)``: the distinct candidate texts' token ids (as :attr:`cand_bytes`) in order of first
        appearance, and for each candidate the position of its text among them (``[K]``): what a batch packs, each
        once. Equal bytes are equal ids (int64, one-to-one)."""
        distinct: dict[bytes, int] = {}
        which = tuple([distinct.setdefault(c, len(distinct)) for c in self.cand_bytes])
        return tuple(distinct), which

    @functools.cached_property
    def state_bytes(self) -> bytes:
        """:attr:`state` as int64 bytes (``array("q", state).tobytes()``)."""
        return array.array("q", self.state).tobytes()


@dataclass
class DecisionCache:
    """Decisions by state, computed on first use (:meth:`get`); a bounded dictionary.

    Args:
        hasher: the token hasher of the policy (its ``buckets``).
        max_entries: decisions kept before the cache is emptied.
    """

    hasher: Hasher
    max_entries: int = MAX_ENTRIES
    _decisions: dict[tuple, Decision] = field(default_factory=dict)
    _turn_keys: dict[int, tuple[Turn, tuple]] = field(default_factory=dict)
    _prefix_keys: dict[int, tuple[tuple[Turn, ...], tuple]] = field(default_factory=dict)
    _initial_keys: dict[int, tuple[Observation, tuple]] = field(default_factory=dict)
    _texts: dict[tuple[str, tuple[str, ...]] | str, tuple[tuple[int, ...], int, bytes]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def clear(self) -> None:
        """Forget every decision (and the objects the keys were read from)."""
        self._decisions.clear()
        self.end_step(keep=0)

    def end_step(self, keep: int = KEEP_ENTRIES) -> None:
        """Forget the objects the keys were read from (the step's episodes, held by the identity memos) and keep the
        decisions, unless there are more than ``keep``: a decision is a function of its key alone, and a state met
        again at a later step (a task drawn again: its first turns) need not be encoded again."""
        if len(self._decisions) > keep:
            self._decisions.clear()
        self._turn_keys.clear()
        self._prefix_keys.clear()
        self._initial_keys.clear()  # the candidate texts' memo holds no episode object: it stays (bounded in get)

    def _turn_key(self, turn: Turn) -> tuple:
        """A turn's part of a state key, computed once per turn object (kept alive beside it, so its id stays its own)."""
        got = self._turn_keys.get(id(turn))
        if got is not None and got[0] is turn:
            return got[1]
        obs = turn.step.observation
        key = (action_key(turn.action), obs.text, tuple((r.content, r.is_error) for r in obs.results))
        self._turn_keys[id(turn)] = (turn, key)
        return key

    def _initial_key(self, initial: Observation) -> tuple:
        got = self._initial_keys.get(id(initial))
        if got is not None and got[0] is initial:
            return got[1]
        key = (initial.text, _tools_json(initial.tools))
        self._initial_keys[id(initial)] = (initial, key)
        return key

    def _turns_key(self, turns: list[Turn]) -> tuple:
        """``tuple(self._turn_key(t) for t in turns)``, extended from the key of ``turns[:-1]`` when that was asked
        (an episode asks turn after turn; the update asks again): remembered by the last turn with the turns it
        ended (compared by identity, C-level; they are kept alive beside it)."""
        if not turns:
            return ()
        objs = tuple(turns)
        got = self._prefix_keys.get(id(objs[-1]))
        if got is not None and got[0] == objs:
            return got[1]
        prev = self._prefix_keys.get(id(objs[-2])) if len(objs) > 1 else None
        if prev is not None and prev[0] == objs[:-1]:
            key = prev[1] + (self._turn_key(objs[-1]),)
        else:
            key = tuple(self._turn_key(t) for t in objs)
        self._prefix_keys[id(objs[-1])] = (objs, key)
        return key

    def key(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> tuple:
        """The identity of a decision point (the anchor state of GiGPO)."""
        return (task_view.get("type", ""), task_view.get("prompt", ""), self._initial_key(initial),
                self._turns_key(turns))

    def get(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Decision:
        """The decision at this state, from the cache or computed (and cached)."""
        key = self.key(task_view, initial, turns)
        found = self._decisions.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        if len(self._decisions) >= self.max_entries:
            self.clear()
        if len(self._texts) >= 20 * self.max_entries:
            self._texts.clear()
        decision = encode_decision(self.hasher, key, task_view, initial, turns, self._texts)
        self._decisions[key] = decision
        return decision


def encode_decision(hasher: Hasher, key: tuple, task_view: dict[str, str], initial: Observation,
                    turns: list[Turn], texts: dict | None = None) -> Decision:
    """Compute a :class:`Decision`: candidates, kinds and token ids of the state and of each candidate.

    ``texts``: a memo of each candidate's token ids and kind by (action key, tags), shared across decisions (the
    same call with the same provenance is a candidate at many states), and of token ids by candidate text (calls
    with other values of the same shapes read the same text: a few hundred texts for thousands of candidates), and
    of the state text's token ids likewise (a text is a text: the same ids whoever reads it); None: none.
    """
    keyed = keyed_candidates(task_view, initial, turns)
    ids, texts = hasher.ids, {} if texts is None else texts
    keys, actions, tags_of = zip(*keyed) if keyed else ((), (), ())
    found = list(map(texts.get, zip(keys, tags_of)))  # (token ids, kind, their bytes) by (action key, tags)
    for j, got in enumerate(found):
        if got is None:
            a, tags = actions[j], tags_of[j]
            text = action_text(a, tags)
            if (same := texts.get(text)) is None:
                token_ids = tuple(ids(text))
                same = texts[text] = (token_ids, 0, array.array("q", token_ids).tobytes())
            found[j] = texts[keys[j], tags] = (same[0], kind_of(tags), same[2])
    cands, kinds, packed = zip(*found) if found else ((), (), ())
    text = state_text(task_view, initial, turns)  # states of other values read often write the same text
    if (same := texts.get(text)) is None:
        token_ids = tuple(ids(text))
        same = texts[text] = (token_ids, 0, array.array("q", token_ids).tobytes())
    return Decision(key=key, actions=actions, index=dict(zip(keys, range(len(keys)))), kinds=kinds,
                    state=list(same[0]), cands=list(cands), cand_bytes=list(packed))


def decision_fields(d: Decision) -> dict[str, Any]:
    """The comparable content of a decision (for tests: a cached decision equals a fresh one)."""
    return {"actions": [action_key(a) for a in d.actions], "kinds": list(d.kinds), "state": list(d.state),
            "cands": [list(c) for c in d.cands]}
