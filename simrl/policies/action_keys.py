"""The identity of an action (:func:`action_key`), and one shared instance per distinct candidate action.

Candidate generation (:mod:`simrl.policies.candidates`) builds the same calls and answers at turn after turn
and episode after episode; building a pydantic :class:`~simrl.types.Action` and keying it was most of its cost.
:func:`call_action` and :func:`final_action` return one frozen action per distinct call / answer, whose key is
remembered beside it (:func:`action_key` of such an action is a dictionary look-up). Memoising changes nothing
a caller sees: the action is equal to a freshly built one and its key is the same string (tested). The memo is
bounded (:data:`MAX_ACTIONS`; emptied when full) and :func:`clear` empties it.
"""

from __future__ import annotations

from typing import Any

from simrl.types import Action, ToolCall

MAX_ACTIONS = 50_000
"""Most actions kept by the memo of :func:`call_action` / :func:`final_action` before it is emptied."""
_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
_memo: dict[tuple, tuple[str, Action]] = {}
_key_of: dict[int, tuple[Action, str]] = {}  # id -> (the action, kept alive so the id stays its own; its key)


def freeze(value: Any) -> Any:
    """A hashable, order-independent form of a JSON-like value (dicts as sorted ``(key, value)`` tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def ident(value: Any) -> tuple:
    """A hashable identity of a JSON-like value that keeps its type and order (``1``, ``1.0`` and ``True``, or
    ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}``, differ): equal identities give equal JSON."""
    return (type(value), value) if type(value) in _SCALAR_TYPES else (list, repr(value))


def _args_key(args: dict[str, Any]) -> Any:
    """:func:`freeze` of a call's arguments; flat arguments (scalars only, the common case) by a shortcut that
    gives the same tuple."""
    if _SCALAR_TYPES.issuperset(map(type, args.values())):
        return tuple(sorted((str(k), v) for k, v in args.items()))
    return freeze(args)


def call_key(name: str, args: dict[str, Any]) -> str:
    """``action_key(Action.call(name, **args))``, without building the action."""
    return repr((((name, _args_key(args)),), None))


def final_key(answer: str) -> str:
    """``action_key(Action.final(answer))``, without building the action."""
    return repr(((), answer))


def action_key(action: Action) -> str:
    """The identity of an action for matching: its calls (name, arguments) and answer, not ``text``/ids.

    Called for every candidate of every turn: an action of :func:`call_action` / :func:`final_action` is
    looked up, any other keyed from its fields.
    """
    got = _key_of.get(id(action))
    if got is not None and got[0] is action:
        return got[1]
    return repr((tuple((c.name, _args_key(c.arguments)) for c in action.tool_calls), action.answer))


def _remember(memo: tuple, key: str, action: Action) -> tuple[str, Action]:
    if len(_memo) >= MAX_ACTIONS:
        clear()
    _memo[memo] = key, action
    _key_of[id(action)] = (action, key)
    return key, action


def call_action(name: str, args: dict[str, Any]) -> tuple[str, Action]:
    """``(action_key, Action.call(name, **args))``, the action shared by every caller (do not mutate it).

    Memoised by the name and the arguments *in their order* and with their types (``{"a": 1, "b": 2}`` and
    ``{"b": 2, "a": 1}`` share a key but not an action: the order is part of what the policy reads and writes).
    """
    memo = (name, *((k, ident(v)) for k, v in args.items()))
    got = _memo.get(memo)
    if got is not None:
        return got
    return _remember(memo, call_key(name, args), Action(tool_calls=[ToolCall(name=name, arguments=args)]))


def final_action(answer: str) -> tuple[str, Action]:
    """``(action_key, Action.final(answer))``, the action shared by every caller."""
    got = _memo.get(memo := ("", answer))
    if got is not None:
        return got
    return _remember(memo, final_key(answer), Action.final(answer))


def clear() -> None:
    """Forget every memoised action."""
    _memo.clear()
    _key_of.clear()
