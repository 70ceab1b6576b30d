"""Memoising pure functions of JSON-like values read again at every episode, and resolved paths.

Some values are the same at every episode of a process: an environment's tool list (one per world,
:func:`simrl.envs.truth.record_tools`, copied into each environment and observation). Reading them again at
every episode (a JSON dump of the schemas for the world model's prompt, a walk for their descriptions, parsing
them into candidate parameters) was a measurable part of a training turn. :func:`by_repr` remembers a function's
result by its argument's ``repr``: for JSON-like values (dicts, lists, strings, numbers, booleans, None) equal
``repr`` means equal values of the same types in the same order, and ``repr`` is C code, much cheaper than the
work saved. Results are shared between callers: do not mutate them. The memo is bounded (emptied when full).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")
_STR = {str}


def by_repr(fn: Callable[[Any], R], maxsize: int = 256) -> Callable[[Any], R]:
    """``fn`` of one JSON-like argument, memoised by the argument's ``repr`` (at most ``maxsize`` results kept).

    The ``repr`` of a large value costs too (a tool list's: about 0.2 ms), so a value made of the very objects
    seen before is looked up by their identities first (:func:`_identity`: a copy of the same list, or the same
    object; a list of dicts copied with their items, as an environment copies its tool list at every episode);
    they are kept alive beside the result, so the identities stay theirs.

    >>> calls = []
    >>> size = by_repr(lambda xs: calls.append(1) or len(xs))
    >>> xs = [1, 2]
    >>> size(xs), size(list(xs)), size([1, 2]), size([1, 2.0]), len(calls)  # 2.0 is not 2: another value
    (2, 2, 2, 2, 2)
    """
    memo: dict[str, R] = {}
    by_ids: dict[tuple[int, ...], tuple[tuple, R]] = {}

    @functools.wraps(fn)
    def memoised(value: Any) -> R:
        ids, parts = _identity(value)
        got = by_ids.get(ids)
        if got is not None:
            return got[1]
        key = repr(value)
        out = memo.get(key, memo)
        if out is memo:
            if len(memo) >= maxsize:
                memo.clear()
            out = memo[key] = fn(value)
        if len(by_ids) >= maxsize:
            by_ids.clear()
        by_ids[ids] = (parts, out)  # type: ignore[assignment]
        return out  # type: ignore[return-value]

    def cache_clear() -> None:
        memo.clear()
        by_ids.clear()

    memoised.cache_clear = cache_clear  # type: ignore[attr-defined]
    return memoised


def _identity(value: Any) -> tuple[tuple, tuple]:
    """``(ids, parts)``: identities that give ``value``'s ``repr`` whenever they are those of ``parts`` (kept alive).

    A list by its items'; an item that is a dict (exactly) with string keys by its keys, in order, and its values'
    identities (equal keys in the same order and the same value objects give the same ``repr``); anything else by
    its own identity.
    """
    if type(value) is not list:
        return (id(value),), (value,)
    ids: list = []
    parts: list = []
    for item in value:
        if type(item) is dict:
            keys = tuple(item)
            if set(map(type, keys)) <= _STR:  # every key a str (none at all too)
                ids.append((keys, tuple(map(id, item.values()))))
                parts += item.values()
                continue
        ids.append(id(item))
        parts.append(item)
    return tuple(ids), tuple(parts)


@functools.lru_cache(maxsize=1024)
def _resolved(path: str) -> Path:
    return Path(path).resolve()


def resolved(path: str | Path) -> Path:
    """``Path(path).resolve()``, remembered for an absolute path (resolving stats every component of the path,
    and the world folder is looked up at every episode); a relative one is resolved against the current folder
    at each call. A symbolic link changed while the process runs is not seen."""
    p = Path(path)
    return _resolved(str(p)) if p.is_absolute() else p.resolve()
