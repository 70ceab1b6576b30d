"""Reading observations generically, and the text features of a state and of a candidate action.

Two halves, both pure functions of text (no world access, no gold, no knowledge of any task family
or environment):

* **Reading.** :func:`prompt_values` takes the values a prompt writes (capitalised or quoted spans,
  ISO dates, numbers: English capitalisation, not a prompt format); :func:`leaves` the scalar fields of
  a tool result (JSON: every string / number leaf with the key it sits under; other text: URLs,
  markdown link texts, ISO dates); :func:`items` the records of a result (the lists of JSON objects
  in it); :func:`shape` a value's kind (``date``, ``number``, an id's ``prefix:``, ``name``, ``text``).
* **Featurising.** :func:`state_text` renders the prompt (names, dates and numbers replaced by their
  kind), the turn, the tools used, the last action and flags read off the last result (error and any
  status code in it, the top-level keys of a JSON result that are set or null, the number of items);
  :func:`action_text` renders a candidate (tool, argument names and value kinds, and the provenance
  tags of :mod:`simrl.policies.candidates`). :class:`Hasher` turns text into hashed word uni- and bi-gram
  ids (CRC-32, stable across processes, unlike ``hash``), the input of the ``EmbeddingBag`` encoders of
  :class:`simrl.policies.scorer.ScorerPolicy` (DRRN, He et al., 2016).
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from typing import Any

from simrl.types import Action, Observation, Turn

Scalar = str | int | float
_SPAN = re.compile(r"[A-Z][\w'.-]*(?:(?:,? (?:and|of|the|de|&) |, | )[A-Z0-9][\w'.-]*)*")
_SENTENCE_END = re.compile(r"(?<=[.?!:])(?<!\b[A-Z]\.)\s+")
"""Where a sentence ends: after ``.``, ``?``, ``!`` or ``:`` and white space, but not after an initial (one capital
letter and a dot: ``David N. Smith``), which Punkt counts among the abbreviations that rarely end a sentence
(Kiss & Strunk 2006, "Unsupervised Multilingual Sentence Boundary Detection", Computational Linguistics 32(4))."""
_QUOTED = re.compile(r"[\"“']([^\"”'\n]{2,60})[\"”']")
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_NUMBER = re.compile(r"(?<![\w.:-])\d+(?![\w:-])")
_ID = re.compile(r"^([a-z_]+):[\w:-]+$")
_URL = re.compile(r"https?://[^\s)\]>\"']+")
_LINK = re.compile(r"\[([^\]]{1,80})\]\((https?://[^)\s]+)\)")
_STATUS = re.compile(r"\b([45]\d\d)\b")
_WORD = re.compile(r"[a-z0-9_]+")
MAX_LEAVES = 400
"""Most scalar fields read from one result (a bound on what a huge result costs)."""
MAX_TEXT = 200
"""Longest string kept as a value (longer strings are prose, not arguments or answers)."""


@functools.lru_cache(maxsize=8192)
def tokens(name: str) -> frozenset[str]:
    """The lower-case words of an identifier: ``"nextCursor"`` / ``"next_cursor"`` -> ``{"next", "cursor"}`` (cached)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return frozenset(w for w in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if w)


@functools.lru_cache(maxsize=4096)
def prompt_values(prompt: str) -> tuple[tuple[str, Scalar], ...]:
    """``(kind, value)`` of the values a prompt writes, in this order: ISO dates (``prompt_date``), numbers
    outside dates (``prompt_number``, int), quoted spans and capitalised word spans (``prompt_span``; a
    word capitalised only because it opens a sentence says nothing: a span that opens a sentence is
    given with and without its first word, and not at all when it is one word; an initial's dot ends no
    sentence, :data:`_SENTENCE_END`). Deduplicated, at most 12.

    >>> prompt_values("Record that Ann Lee joined Acme Ltd on 2020-01-02. Use the tools.")
    (('prompt_date', '2020-01-02'), ('prompt_span', 'Ann Lee'), ('prompt_span', 'Acme Ltd'))
    >>> prompt_values("Record that David N. Smith joined Franco LLC. Use the tools.")
    (('prompt_span', 'David N. Smith'), ('prompt_span', 'Franco LLC'))
    """
    out: list[tuple[str, Scalar]] = [("prompt_date", d) for d in _ISO_DATE.findall(prompt)]
    rest = _ISO_DATE.sub(" ", prompt)
    out += [("prompt_number", int(n)) for n in _NUMBER.findall(rest)]
    out += [("prompt_span", q.strip()) for q in _QUOTED.findall(prompt)]
    for sentence in _SENTENCE_END.split(rest):
        for m in _SPAN.finditer(sentence):
            span = m.group(0).rstrip(".,")
            if m.start() > 0:
                out.append(("prompt_span", span))
            elif " " in span:  # opens the sentence: its first word may be capitalised only for that
                out += [("prompt_span", span), ("prompt_span", span.split(" ", 1)[1])]
    return tuple(dict.fromkeys(out))[:12]


def parse_json(text: str) -> Any:
    """The JSON value of ``text``, or None when it is not JSON."""
    text = text.strip()
    if not text or text[0] not in "[{":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=2048)
def leaves(text: str) -> tuple[tuple[str, Scalar], ...]:
    """``(key, value)`` of the scalar fields of a result, in document order (at most :data:`MAX_LEAVES`).

    JSON: every string (1..:data:`MAX_TEXT` characters) and number leaf with the key it sits under (items
    of a list take the list's key); other text: URLs (``url``), markdown link texts (``link``) and ISO
    dates (``date``). Cached by text: the result is shared.
    """
    obj = parse_json(text)
    out: list[tuple[str, Scalar]] = []
    if obj is None:
        out += [("link", t) for t, _ in _LINK.findall(text)]
        out += [("url", u.rstrip(".,")) for u in _URL.findall(text)]
        out += [("date", d) for d in _ISO_DATE.findall(text)]
        return tuple(dict.fromkeys(out))[:MAX_LEAVES]

    def walk(value: Any, key: str) -> None:
        if len(out) >= MAX_LEAVES:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, int | float) or (isinstance(value, str) and 0 < len(value) <= MAX_TEXT):
            out.append((key, value))

    walk(obj, "")
    return tuple(out)


@functools.lru_cache(maxsize=2048)
def items(text: str) -> tuple[dict[str, Any], ...]:
    """The records of a JSON result: the objects of its lists (top level, or one level down). Shared: do not mutate."""
    obj = parse_json(text)
    lists = [obj] if isinstance(obj, list) else [v for v in obj.values() if isinstance(v, list)] \
        if isinstance(obj, dict) else []
    return tuple(r for lst in lists for r in lst if isinstance(r, dict))


@functools.lru_cache(maxsize=2048)
def is_json(text: str) -> bool:
    """``parse_json(text) is not None``: whether a result is JSON (an object or an array); cached by text (the
    candidates and features of every turn ask it of the same results again)."""
    return parse_json(text) is not None


@functools.lru_cache(maxsize=2048)
def top_keys(text: str) -> dict[str, Any]:
    """The top-level fields of a JSON object result (``{}`` for other text). Cached by text: shared, do not mutate."""
    obj = parse_json(text)
    return obj if isinstance(obj, dict) else {}


def shape(value: Any) -> str:
    """A value's kind, the words of it that generalise across worlds: ``date``, ``number``, an id's prefix
    (``organization:000012`` -> ``organization``), ``url``, ``name`` (capitalised), else ``text``; dicts as
    ``key kind`` pairs."""
    if isinstance(value, dict):
        return " ".join(f"{k} {shape(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return " ".join(shape(v) for v in value)
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int | float):
        return "number"
    if type(value) is str and (known := _SHAPES.get(value)) is not None:
        return known
    text = str(value)
    kind = _text_shape(text)
    if type(value) is str:
        if len(_SHAPES) >= 100_000:
            _SHAPES.clear()
        _SHAPES[value] = kind
    return kind


_SHAPES: dict[str, str] = {}
"""Memo of :func:`shape` of strings (values recur turn after turn; emptied at 100,000 entries)."""


def _text_shape(text: str) -> str:
    if _ISO_DATE.fullmatch(text):
        return "date"
    if (m := _ID.match(text)) is not None:
        return m.group(1)
    if text.isdigit():
        return "number"
    if _URL.match(text):
        return "url"
    return "name" if text[:1].isupper() else "text"


def id_prefix(value: Any) -> str | None:
    """The ``prefix`` of a ``prefix:rest`` id value, else None."""
    m = _ID.match(value) if isinstance(value, str) else None
    return m.group(1) if m else None


def is_date(value: Any) -> bool:
    """True for an ISO date string."""
    return isinstance(value, str) and _ISO_DATE.fullmatch(value) is not None


def obs_flags(obs: Observation) -> list[str]:
    """Flags read off an observation: error and its status codes, set / null top-level keys, items, empty."""
    flags: list[str] = []
    for r in obs.results:
        if r.is_error:
            flags.append("flag_error")
            flags += [f"flag_status_{c}" for c in _STATUS.findall(r.content)[:2]]
            continue
        keys = top_keys(r.content)
        for k, v in list(keys.items())[:12]:
            if not isinstance(v, list | dict):
                flags.append(f"key_{k}_{'null' if v in (None, '') else 'set'}")
        n = len(items(r.content))
        flags.append("flag_items_none" if n == 0 else "flag_items_some")
    return list(dict.fromkeys(flags))


@functools.lru_cache(maxsize=4096)
def _generic(text: str) -> str:
    """``text`` with the values :func:`prompt_values` finds replaced by their kind."""
    for kind, value in sorted(prompt_values(text), key=lambda kv: -len(str(kv[1]))):
        text = text.replace(str(value), kind.split("_")[1])
    return text


def _call_words(action: Action) -> str:
    if action.is_final:
        return f"answer {shape(action.answer)}"
    return " ; ".join(f"{c.name} " + " ".join(f"{k} {shape(v)}" for k, v in c.arguments.items())
                      for c in action.tool_calls)


def state_text(task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> str:
    """The text the state encoder reads: prompt (values by kind), turn, tools used, last action, flags."""
    parts = [f"type_{task_view.get('type', '')}", _generic(task_view.get("prompt", initial.text)),
             f"turn_{min(len(turns), 12)}"]
    used = [c.name for t in turns for c in t.action.tool_calls]
    parts += [f"used_{name}" for name in dict.fromkeys(used)]
    parts.append(f"calls_{min(len(used), 12)}")
    if turns:
        last = turns[-1]
        parts.append("last " + _call_words(last.action))
        parts += obs_flags(last.step.observation)
    return "\n".join(parts)


def action_text(action: Action, tags: tuple[str, ...] = ()) -> str:
    """The text the action encoder reads: the call (or answer) and its provenance tags."""
    kind = "act_answer" if action.is_final else " ".join(f"act_{c.name}" for c in action.tool_calls)
    return f"{kind} {' '.join(tags)}\n{_call_words(action)}"


class Hasher:
    """Hashed lower-cased word uni- and bi-gram ids in ``[0, buckets)`` (CRC-32; cached per token)."""

    def __init__(self, buckets: int, cache_size: int = 200_000) -> None:
        self.buckets = buckets
        self._cache: dict[str, int] = {}
        self._cache_size = cache_size

    def _new(self, token: str) -> int:
        i = zlib.crc32(token.encode()) % self.buckets
        if len(self._cache) < self._cache_size:
            self._cache[token] = i
        return i

    def ids(self, text: str) -> list[int]:
        """Ids of the words of ``text`` and of each adjacent pair; ``[0]`` for text without words."""
        words = _WORD.findall(text.lower())
        grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
        cache = self._cache
        return [cache[g] if g in cache else self._new(g) for g in grams] or [0]
