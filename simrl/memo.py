"""Memoising a pure function of one object by the object's identity.

Some objects are shared by every episode of a process and never changed: an environment's tool list (one per
world, :func:`simrl.envs.truth.record_tools`), a task's tool schemas. Reading them again at every episode (a
JSON dump of the schemas for the world model's prompt, a walk for their descriptions, parsing them into
candidate parameters) was a measurable part of a training turn. :func:`by_identity` remembers a function's
result per argument object, keeping the object alive beside its result so that its ``id`` cannot be reused by
another object while remembered. The argument must not be mutated after the first call (a changed object would
be served its old result); the memo is bounded (emptied when full).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")


def by_identity(fn: Callable[[Any], R], maxsize: int = 4096) -> Callable[[Any], R]:
    """``fn`` memoised by the identity of its one argument (at most ``maxsize`` results kept).

    >>> calls = []
    >>> size = by_identity(lambda xs: calls.append(1) or len(xs))
    >>> xs = [1, 2]
    >>> size(xs), size(xs), size([1, 2]), len(calls)  # an equal but other list is computed again
    (2, 2, 2, 2)
    """
    memo: dict[int, tuple[Any, R]] = {}

    @functools.wraps(fn)
    def memoised(obj: Any) -> R:
        got = memo.get(id(obj))
        if got is not None and got[0] is obj:
            return got[1]
        if len(memo) >= maxsize:
            memo.clear()
        out = fn(obj)
        memo[id(obj)] = (obj, out)
        return out

    memoised.cache_clear = memo.clear  # type: ignore[attr-defined]
    return memoised


@functools.lru_cache(maxsize=1024)
def _resolved(path: str) -> Path:
    return Path(path).resolve()


def resolved(path: str | Path) -> Path:
    """``Path(path).resolve()``, remembered for an absolute path (resolving stats every component of the path,
    and the world folder is looked up at every episode); a relative one is resolved against the current folder
    at each call. A symbolic link changed while the process runs is not seen."""
    p = Path(path)
    return _resolved(str(p)) if p.is_absolute() else p.resolve()
