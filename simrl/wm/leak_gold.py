"""Where a gold answer may appear in a world model's observation: only where the ground truth holds it.

The rule (:class:`GoldRule`, part of :class:`simrl.wm.leak_guard.LeakGuard`): a value equal to the task's
gold answer or an alias (or a gold table cell) may appear in a predicted observation only at a *place*
where the ground truth's result of the same call holds it; anywhere else it is redacted and counted
(``leak_gold``). A world model that knows the answer (its prompt's facts) cannot pass it on in a note
beside an empty page, an error message or a key name, even when the real page of that call shows it
elsewhere. Places:

* **JSON** (the prediction parses as a JSON object or array): a value or a key, at its key path with list
  positions ignored (``records[].name``). Held where the truth, parsed as JSON, holds the gold at the
  same path in the same role (value or key); elsewhere the value becomes :data:`REDACTED` and a key
  holding it is dropped (the rest of the observation stays valid JSON).
* **Text**: a line. Held where a line of the truth holds the gold and shares most of its other words
  (Jaccard similarity of the word sets, gold words left out, at least :data:`LINE_SIMILARITY`: the same
  search result, reworded at most); elsewhere the line is removed.

"Holds" is whole words after :func:`simrl.wm.leak_guard.normalise` (``East  sydneyberg.`` holds ``East
Sydneyberg``); a gold shorter than ``MIN_SECRET_CHARS`` that is not a number (``no``) is held only by a
whole value or line equal to it, as a word it is everywhere. Never redacted: a gold the policy has seen
itself (its prompt, the call's arguments; numbers under ``MIN_SECRET_CHARS`` excepted: a page number
is not the answer), and one the control instruction asks for (its text).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

LINE_SIMILARITY = 0.5
"""Jaccard similarity of a prediction line's words to a truth line's (gold words left out) at which
the line is the truth's, reworded (a note around the answer shares none of a result's words)."""
REDACTED = "[redacted]"
"""What a JSON value holding the gold where the truth does not becomes."""


def holds(norm: str, gold: str, min_chars: int) -> bool:
    """Whether normalised text ``norm`` holds normalised ``gold`` (both padded with spaces): as whole words,
    or, for a short non-number gold, as the whole text.

    >>> holds(" the answer is 21 ", " 21 ", 3), holds(" no results ", " no ", 3), holds(" no ", " no ", 3)
    (True, False, True)
    """
    if len(gold) - 2 >= min_chars or gold.strip().isdigit():
        return gold in norm
    return norm == gold


def parse_json(text: str | None) -> Any:
    """``text`` as a JSON object or array, else None."""
    stripped = (text or "").strip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


def json_places(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    """``(path, role, item)`` of every key (role ``key``, the path of its mapping) and scalar value (role
    ``value``, its own path); list positions are ``[]`` in a path.

    >>> sorted(json_places({"records": [{"name": "Ada"}], "total": 1}))[:3]
    [((), 'key', 'records'), ((), 'key', 'total'), (('records', '[]'), 'key', 'name')]
    """
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, "key", key
            yield from json_places(value, path + (str(key),))
    elif isinstance(node, list):
        for item in node:
            yield from json_places(item, path + ("[]",))
    elif node is not None:
        yield path, "value", node


class GoldRule:
    """The gold rule of one call (module docstring).

    Args:
        golds: the gold strings, normalised (``" east sydneyberg "``).
        reference: the truth's observation of the call (None: there is none, so the gold is held nowhere).
        exempt: normalised text whose golds are never redacted (what the policy has seen, the control
            instruction); ``exempt_short``: the same, for golds under ``min_chars`` (the control only).
        normalise: :func:`simrl.wm.leak_guard.normalise`.
        min_chars: ``MIN_SECRET_CHARS``.
    """

    def __init__(self, golds: list[str], reference: str | None, *, exempt: str, exempt_short: str,
                 normalise: Any, min_chars: int) -> None:
        self.normalise, self.min_chars = normalise, min_chars
        self.golds = [g for g in dict.fromkeys(golds) if g.strip()
                      and not holds(exempt if len(g) - 2 >= min_chars else exempt_short, g, min_chars)]
        self.truth_lines = [normalise(ln) for ln in (reference or "").splitlines()]
        truth = parse_json(reference)
        self.truth_places = {(path, role) + (g,) for path, role, item in json_places(truth)
                             for g in self.golds if holds(normalise(str(item)), g, min_chars)}

    def _held(self, item: Any) -> list[str]:
        norm = self.normalise(str(item))
        return [g for g in self.golds if holds(norm, g, self.min_chars)]

    def redact_json(self, text: str) -> tuple[str, int] | None:
        """``(text, values or keys redacted)`` for a JSON prediction (re-serialised only when something
        went), or None when ``text`` is not JSON (then :meth:`line_leaks` decides, line by line)."""
        data = parse_json(text)
        if data is None or not self.golds:
            return None
        count = [0]
        redacted = self._redact(data, (), count)
        if not count[0]:
            return text, 0
        indent = 2 if "\n" in text.strip() else None
        return json.dumps(redacted, ensure_ascii=False, indent=indent), count[0]

    def _redact(self, node: Any, path: tuple[str, ...], count: list[int]) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                here = path + (str(key),)
                if any((path, "key", g) not in self.truth_places for g in self._held(key)):
                    count[0] += 1  # a key naming the answer: dropped with its value
                    continue
                out[key] = self._redact(value, here, count)
            return out
        if isinstance(node, list):
            return [self._redact(item, path + ("[]",), count) for item in node]
        if node is not None and any((path, "value", g) not in self.truth_places for g in self._held(node)):
            count[0] += 1
            return REDACTED
        return node

    def line_leaks(self, norm_line: str) -> bool:
        """Whether a text line (normalised) holds a gold that no similar truth line holds."""
        return any(not any(holds(t, g, self.min_chars) and self._similar(norm_line, t, g) for t in self.truth_lines)
                   for g in self.golds if holds(norm_line, g, self.min_chars))

    @staticmethod
    def _similar(a: str, b: str, gold: str) -> bool:
        """Jaccard similarity of the word sets of ``a`` and ``b`` without ``gold``'s words >= LINE_SIMILARITY."""
        drop = set(gold.split())
        wa, wb = set(a.split()) - drop, set(b.split()) - drop
        if not wa and not wb:
            return True
        return len(wa & wb) / len(wa | wb) >= LINE_SIMILARITY
