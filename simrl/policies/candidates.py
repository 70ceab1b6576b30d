"""The actions a small policy chooses among at a turn, built from the tool schemas and the episode's values.

``tagged_candidates(task_view, initial, turns)`` knows no environment, task family or prompt format.
It reads three things:

* **the tool schemas** (``initial.tools``): names, parameters (type, enum, required), and two generic
  things in the descriptions: quoted literals (``'organization'``; offered to the tool's required string
  parameters) and JSON object examples (``{"employees": 120}``; their keys, with a value of the same kind,
  are offered to every object parameter);
* **the values of this episode**: those the prompt writes (:func:`simrl.policies.features.prompt_values`)
  and the scalar fields of every successful result so far, with the key they sat under
  (:func:`simrl.policies.features.leaves`);
* **the last call and its result.**

Calls. Each tool's required parameters are filled from values that fit them: an enum's values; for a
string, values observed under a key that shares a word with the parameter's name (``org_id`` <- ``id``,
``org``), kept to those whose id prefix matches a word of the name when any does (``person_id`` <-
``person:...``), then the description's literals, then the prompt's values (a free-text parameter no observed
key names, e.g. a query: then the names read so far, i.e. link texts); for a number, the prompt's
and matching observed numbers; for an object, ``{example key: value of the example's kind}``. Optional
parameters are left out, except object ones (tried absent and filled); a tool that requires no parameter
is also tried with each optional scalar parameter alone, filled the same way (a schema's ``required`` cannot
say "exactly one of": ``web_search``'s ``query`` / ``queries``). At most :data:`PER_TOOL` calls a tool.
Recovery is only made *expressible*, never chosen: the last call repeated (``repeat_last``), the last call
with each optional parameter set to a value of the last result under a matching key
(``continue``: a cursor), the last failed call without each optional argument (``drop``).
Walking a listing is expressible too, after every other call: a tool with one required (free string)
parameter is also called with the values of the same kind, not yet passed to it, of the text result where its
last value was read (``frontier``: the next links of a list page, however many pages were read in between;
JSON listings are left out: they are paged and walked by cursor, and the record tools' candidates stay as
they were). After a text result, last (:mod:`simrl.policies.candidate_pages`): every value it lists for a
one-parameter tool (all 10 URLs of a search engine's result page, not only the first), and for a free-text
parameter a name read on it joined with a phrase of the prompt (``Acme Ltd chief executive``) and the last query
narrowed to each year of the dates it writes (``Acme Ltd chief executive 1999``).

Answers. Each scalar value of the last result; over the records (:func:`simrl.policies.features.items`) of
the current listing — every successful result of the last call that returned records and of the calls
that differ from it only in optional scalar arguments (its pages) — their count, the sum / min / max of
each numeric field, the earliest / latest of each date field and the other fields of the records that
hold them; for a text (not JSON) result, first the facts of the page's key/value table (each tagged with its
field's name, ``tag_field_headquarters``: what tells one fact of a page from another), the links in them, the years
of their dates and the dates its text writes (:func:`simrl.policies.candidate_tables.text_answers`); and ``done``. When the
prompt asks for a table (its columns listed after a colon), first a table of
every record read so far that has each column (:mod:`simrl.policies.candidate_tables`). At most
:data:`MAX_ANSWERS`.

Deterministic: the same history gives the same list in the same order; duplicates are removed (actions
compared by calls and answer, not ``text``); at most :data:`MAX_CANDIDATES` in all.

Memoised (a pure optimisation, tested: the same candidates with or without the memos, :func:`clear_memos`):
the tools' calls by the tools, the prompt and the values read so far, which recur (a turn that read nothing
new, another episode that read the same); each tool's calls by the options of its parameters; one shared
action per distinct call or answer (:mod:`simrl.policies.action_keys`), its key known beside it.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from simrl.memo import by_repr
from simrl.policies import action_keys, candidate_pages
from simrl.policies.action_keys import action_key, call_action, final_action, ident
from simrl.policies.action_keys import freeze as _freeze
from simrl.policies.candidate_tables import asked_columns, table_answer, text_answers
from simrl.policies.features import (
    Scalar,
    id_prefix,
    is_date,
    is_json,
    items,
    leaves,
    prompt_values,
    shape,
    tokens,
    top_keys,
)
from simrl.types import Action, Observation, ToolCall, Turn

Tagged = tuple[Action, tuple[str, ...]]
"""A candidate and its provenance tags (e.g. ``("tag_continue_cursor",)``)."""
Keyed = tuple[str, Action, tuple[str, ...]]
"""A candidate with its :func:`~simrl.policies.action_keys.action_key` and tags."""
PER_TOOL = 6
"""Most calls of one tool among the candidates of a turn."""
MAX_VALUES = 6
"""Most values tried for one parameter."""
MAX_ANSWERS = 10
"""Most final answers among the candidates of a turn."""
MAX_CANDIDATES = 64
"""Most candidates of a turn: recovery first, then answers, then the tools' calls taken in turn (one call of
each tool, then a second of each, ...), so that no tool is crowded out by the tools listed before it."""
_FLAT = (str, int, float, bool, type(None))
"""Types :func:`~simrl.policies.action_keys.freeze` returns as they are."""
_LITERAL = re.compile(r"'([A-Za-z_][\w-]{0,40})'")
_MARKUP = re.compile(r"</?[A-Za-z_]\w*>")
_EXAMPLE = re.compile(r"\{[^{}]{1,200}\}")


@dataclass(frozen=True)
class Tool:
    """What a tool schema says: parameters (name -> JSON schema), required names, literals, examples."""

    name: str
    params: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    literals: tuple[str, ...]
    examples: tuple[tuple[str, Any], ...]

    def kind(self, param: str) -> str:
        """The JSON type of a parameter (the first non-null one of an ``anyOf``), ``string`` if unsaid."""
        got = self._kinds.get(param)
        if got is None:
            spec = self.params.get(param, {})
            kinds = [spec.get("type")] + [s.get("type") for s in spec.get("anyOf", []) if isinstance(s, dict)]
            got = self._kinds[param] = next((k for k in kinds if isinstance(k, str) and k != "null"), "string")
        return got

    def optional(self) -> list[str]:
        return [p for p in self.params if p not in self.required]

    @functools.cached_property
    def _kinds(self) -> dict[str, str]:
        return {}

    @functools.cached_property
    def ident(self) -> str:
        """What the schema says, as one string (tools of equal schemas, read in different episodes, share it)."""
        return repr((self.name, self.params, self.required, self.literals, self.examples))


def read_tools(schemas: list[dict[str, Any]]) -> list[Tool]:
    """:class:`Tool` of each OpenAI-style tool schema (``{"function": {"name", "description", "parameters"}}``)."""
    out = []
    for t in schemas:
        fn = t.get("function", t)
        params = (fn.get("parameters") or {}).get("properties") or {}
        desc = str(fn.get("description") or "") + " " + " ".join(str(p.get("description", "")) for p in
                                                                 params.values() if isinstance(p, dict))
        examples = []
        for m in _EXAMPLE.findall(desc):
            try:
                obj = json.loads(m)
            except ValueError:
                continue
            if isinstance(obj, dict):
                examples += [(str(k), v) for k, v in obj.items() if isinstance(v, str | int | float)]
        literals = tuple(dict.fromkeys(v for v in _LITERAL.findall(desc) if id_prefix(v) is None))
        out.append(Tool(str(fn.get("name", "")), {k: v for k, v in params.items() if isinstance(v, dict)},
                        tuple((fn.get("parameters") or {}).get("required") or ()), literals, tuple(examples)))
    return out


_read_tools_once = by_repr(read_tools)
""":func:`read_tools`, once per tool list (the same at every turn and episode: :mod:`simrl.memo`)."""


@dataclass
class _Values:
    """The values of this episode: the prompt's, and every successful result's (newest first)."""

    prompt: list[tuple[str, Scalar]]
    seen: list[tuple[str, Scalar]] = field(default_factory=list)
    examples: list[tuple[str, Any]] = field(default_factory=list)
    _matching: dict[str, list[tuple[str, Scalar]]] = field(default_factory=dict)
    _keys: set[str] | None = None  # the keys of seen (set when first asked)

    def matching(self, param: str) -> list[tuple[str, Scalar]]:
        """Observed ``(key, value)`` whose key shares a word with ``param``; narrowed to id prefixes it names
        (once per parameter name: tools share them, ``org_id``, ``name``; do not mutate the list)."""
        got = self._matching.get(param)
        if got is None:
            got = self._matching[param] = self._match(param)
        return got

    def _match(self, param: str) -> list[tuple[str, Scalar]]:
        """``typed or hits`` of ``hits = [(k, v) for k, v in seen if tokens(k) & words]`` and ``typed``, the hits that
        are ids whose prefix ``p`` has ``p.startswith(w) or w.startswith(p)`` for a word ``w`` (of more than 2 letters)
        of the name: each distinct key's words and each distinct prefix tested once (a result repeats a few keys)."""
        words = tokens(param)
        if self._keys is None:
            self._keys = {k for k, _ in self.seen}
        keys = {k for k in self._keys if tokens(k) & words}
        if not keys:
            return []
        hits = [kv for kv in self.seen if kv[0] in keys]
        long, fits, typed = [w for w in words if len(w) > 2], {}, []
        for kv in hits:
            if (p := id_prefix(kv[1])) is not None:
                ok = fits.get(p)
                if ok is None:
                    ok = fits[p] = any(p.startswith(w) or w.startswith(p) for w in long)
                if ok:
                    typed.append(kv)
        return typed or hits

    def like(self, example: Any) -> list[tuple[str, Scalar]]:
        """Values of the same kind as ``example`` (numbers, dates, ids of the same prefix, else prompt spans)."""
        return list(self.like_iter(example))

    def like_iter(self, example: Any) -> Iterable[tuple[str, Scalar]]:
        """:meth:`like`, one value at a time (a caller that takes the first few reads no further)."""
        if isinstance(example, int | float):
            kind = type(example)
            return ((k, v) for k, v in itertools.chain(self.prompt, self.seen) if type(v) is kind)
        if is_date(example):
            return ((k, v) for k, v in itertools.chain(self.prompt, self.seen) if is_date(v))
        if (p := id_prefix(example)) is not None:
            return ((k, v) for k, v in self.seen if id_prefix(v) == p)
        return ((k, v) for k, v in self.prompt if k == "prompt_span")


def _ok(turn: Turn) -> list[str]:
    """The contents of a turn's successful results."""
    return [r.content for r in turn.step.observation.results if not r.is_error]


def _episode_values(prompt: str, turns: list[Turn]) -> _Values:
    vals = _Values(list(prompt_values(prompt)))
    known: set = set()  # what vals.seen holds (membership by ==, as the list's; a set keeps it linear)
    for turn in reversed(turns):
        for text in _ok(turn):
            new = [kv for kv in leaves(text) if kv not in known]
            vals.seen += new
            known.update(new)
    return vals


def _values(tools: dict[str, Tool], prompt: str, turns: list[Turn]) -> _Values:
    vals = _episode_values(prompt, turns)
    vals.examples = list(dict.fromkeys((k, v) for t in tools.values() for k, v in t.examples))
    return vals


def _options(tool: Tool, param: str, vals: _Values) -> list[tuple[Any, str]]:
    """``(value, source tag)`` for one parameter, best first, at most :data:`MAX_VALUES`."""
    spec, kind = tool.params.get(param, {}), tool.kind(param)
    out: Iterable[tuple[Any, str]] = ()  # made as it is read: the first MAX_VALUES distinct values are taken
    if isinstance(spec.get("enum"), list):
        out = [(v, "enum") for v in spec["enum"]]
    elif kind == "string":
        matching = vals.matching(param)
        seen = ((v, f"key_{k}") for k, v in matching if isinstance(v, str))
        prompt = ((str(v), k) for k, v in vals.prompt if k != "prompt_number")
        out = itertools.chain(((v, "literal") for v in tool.literals),
                              (x for pair in itertools.zip_longest(seen, prompt) for x in pair if x is not None))
        if not any(isinstance(v, str) for _, v in matching):  # a free-text parameter (no observed key names it,
            # e.g. a query): then the names read so far
            out = itertools.chain(out, ((v, "key_link") for k, v in vals.seen if k == "link" and isinstance(v, str)))
    elif kind in ("integer", "number"):
        out = itertools.chain(((v, k) for k, v in vals.prompt if k == "prompt_number"),
                              ((v, f"key_{k}") for k, v in vals.matching(param) if isinstance(v, int | float)))
    elif kind == "object":
        out = (({key: v}, f"example_{key}_{k}") for key, example in vals.examples
               for k, v in itertools.islice(vals.like_iter(example), 3))
    seen_, unique = set(), []
    for v, tag in out:
        if (f := repr(v) if type(v) in _FLAT else repr(_freeze(v))) not in seen_:  # _freeze(v) is v for those
            seen_.add(f)
            unique.append((v, tag))
            if len(unique) == MAX_VALUES:
                break
    return unique


_CALLS: dict[tuple, list[Keyed]] = {}
"""Memo of :func:`_calls` by what its result depends on (emptied at 20,000 entries)."""


def _calls(tool: Tool, vals: _Values) -> list[Keyed]:
    """The tool's calls: its required parameters filled (every combination), optional objects absent or filled.

    A pure function of the tool's schema and the options of its parameters, memoised by them (the same options
    recur at turn after turn: only the calls are built again, with their actions shared).
    """
    params = list(tool.required) + [p for p in tool.optional() if tool.kind(p) == "object"]
    choices = []
    for p in params:
        opts = _options(tool, p, vals)
        if p not in tool.required:
            opts = [(None, "absent")] + opts
        if not opts:
            return []
        choices.append(opts)
    # a tool that requires nothing (``web_search``: exactly one of query / queries, which a schema's `required`
    # cannot say) is also tried with each optional scalar parameter alone, filled like a required one
    alone = [] if tool.required else [(p, v, tag) for p in tool.optional()
                                      if tool.kind(p) in ("string", "integer", "number")
                                      for v, tag in _options(tool, p, vals)]
    memo = (tool.ident, tuple(tuple((ident(v), tag) for v, tag in opts) for opts in choices),
            tuple((p, ident(v), tag) for p, v, tag in alone))
    got = _CALLS.get(memo)
    if got is None:
        if len(_CALLS) >= 20_000:
            _CALLS.clear()
        got = _CALLS[memo] = _build_calls(tool, params, choices, alone)
    return got


_ALL_CALLS: dict[tuple, list[Keyed]] = {}
"""Memo of :func:`_all_calls` by the tools, the prompt and the values read (emptied at 20,000 entries)."""


def _all_calls(tools: dict[str, Tool], prompt: str, vals: _Values) -> list[Keyed]:
    """Each tool's :func:`_calls`, taken in turn (one call of each tool, then a second of each, ...); memoised by the
    tools, the prompt and the values read so far, which often recur (a turn that read nothing new: an error, an
    answer, a repeated read; another episode's same reads)."""
    memo = (tuple(t.ident for t in tools.values()), prompt, repr(vals.seen))
    got = _ALL_CALLS.get(memo)
    if got is None:
        if len(_ALL_CALLS) >= 20_000:
            _ALL_CALLS.clear()
        per_tool = [_calls(tool, vals) for tool in tools.values()]
        got = _ALL_CALLS[memo] = [c for row in itertools.zip_longest(*per_tool) for c in row if c is not None]
    return got


_BY_TEXTS: dict[tuple, list[Keyed]] = {}
"""Memo of :func:`_all_calls` by the tools, the prompt and the successful results' texts, newest turn first (what
:func:`_episode_values` reads: the same texts, the same values; no walk of them, no ``repr`` of the values read)
(emptied at 20,000 entries)."""
_LAZY = _Values([])
"""Stands for the values of a turn whose calls :data:`_BY_TEXTS` knew (made when something else reads them)."""


def _build_calls(tool: Tool, params: list[str], choices: list[list[tuple[Any, str]]],
                 alone: list[tuple[str, Any, str]]) -> list[Keyed]:
    """:func:`_calls`' candidates from the options of each parameter (and of each scalar one alone)."""
    out = []
    for combo in itertools.islice(itertools.product(*choices), PER_TOOL):
        args = {p: v for p, (v, _) in zip(params, combo) if v is not None}
        out.append((*call_action(tool.name, args), (f"tag_call_{tool.name}",) + tuple(
            f"src_{p}_{tag}" for p, (_, tag) in zip(params, combo))))
    for p, v, tag in alone[:PER_TOOL - len(out)] if alone else ():
        out.append((*call_action(tool.name, {p: v}), (f"tag_call_{tool.name}", f"src_{p}_{tag}", "tag_alone")))
    return out


def _recovery(tools: dict[str, Tool], turns: list[Turn]) -> Iterable[Keyed]:
    """The last call repeated, continued (an optional parameter set from its result) or without an optional argument."""
    if not turns or not turns[-1].action.tool_calls:
        return
    call, obs = turns[-1].action.tool_calls[0], turns[-1].step.observation
    failed = any(r.is_error for r in obs.results)
    repeat = call_action(call.name, call.arguments) if call.call_id is None else _keyed(Action(tool_calls=[call]))
    yield *repeat, ("tag_repeat_last", "tag_after_error" if failed else "tag_after_ok")
    tool = tools.get(call.name)
    if tool is None:
        return
    if failed:
        for p in call.arguments:
            if p not in tool.required:
                args = {k: v for k, v in call.arguments.items() if k != p}
                yield *call_action(call.name, args), ("tag_drop_arg", f"tag_drop_{p}")
        return
    for text in _ok(turns[-1]):
        top_level = top_keys(text)
        top = [(k, v) for k, v in leaves(text) if k and k in top_level]
        for p in tool.optional():
            for k, v in top:
                if tokens(k) & tokens(p) and v != call.arguments.get(p):
                    yield *call_action(call.name, {**call.arguments, p: v}), ("tag_continue", f"tag_continue_{p}")


def _keyed(action: Action) -> tuple[str, Action]:
    return action_key(action), action


def _frontier(tools: dict[str, Tool], turns: list[Turn]) -> Iterable[Keyed]:
    """A one-parameter tool's calls with the values not yet passed to it, from the result its last value was read in
    (a text result: none while every successful result is JSON, as in the record tools' episodes)."""
    if not all(is_json(text) for t in turns for text in _ok(t)):
        yield from _frontier_scan(tools, turns)


def _frontier_scan(tools: dict[str, Tool], turns: list[Turn]) -> Iterable[Keyed]:
    """:func:`_frontier` without its shortcut: every one-parameter tool scanned."""
    for tool in tools.values():
        p = tool.required[0] if len(tool.required) == 1 else None
        if p is None or tool.kind(p) != "string" or "enum" in tool.params.get(p, {}):
            continue
        calls = [(j, t.action.tool_calls[0].arguments.get(p)) for j, t in enumerate(turns)
                 if t.action.tool_calls and t.action.tool_calls[0].name == tool.name]
        if not calls:
            continue
        j, last = calls[-1]
        found = next((values for turn in reversed(turns[:j]) for text in _ok(turn) if not is_json(text)
                      if last in (values := [v for k, v in leaves(text) if isinstance(v, str) and tokens(k) & tokens(p)])),
                     None)
        done = {v for _, v in calls}
        for v in list(dict.fromkeys(v for v in found or () if v not in done and shape(v) == shape(last)))[:PER_TOOL]:
            yield *call_action(tool.name, {p: v}), (f"tag_call_{tool.name}", f"src_{p}_frontier", "tag_frontier")


_SIGNATURES: dict[tuple[int, int], tuple[ToolCall, Tool | None, str]] = {}
"""Memo of :func:`_signature` by the identities of the call and tool (both kept beside it, so the ids stay theirs;
emptied at 20,000 entries): a policy's calls are the shared candidate actions, met again turn after turn."""


def _signature(call: ToolCall, tool: Tool | None) -> str:
    """A call without its optional scalar arguments (a cursor, a limit): the calls of one listing share it."""
    got = _SIGNATURES.get((id(call), id(tool)))
    if got is not None and got[0] is call and got[1] is tool:
        return got[2]
    keep = {k: v for k, v in call.arguments.items()
            if tool is None or k in tool.required or isinstance(v, dict | list)}
    sig = repr((call.name, _freeze(keep)))
    if len(_SIGNATURES) >= 20_000:
        _SIGNATURES.clear()
    _SIGNATURES[id(call), id(tool)] = (call, tool, sig)
    return sig


def listing(tools: dict[str, Tool], turns: list[Turn]) -> tuple[list[dict[str, Any]], int]:
    """``(records, pages)`` of the current listing (see the module docstring); ``([], 0)`` when none."""
    records, pages = _listing_records(_listing_texts(tools, turns))
    return list(records), pages


def _listing_texts(tools: dict[str, Tool], turns: list[Turn]) -> tuple[str, ...]:
    """The successful results of the current listing's calls, its pages in turn order (``()`` when none): what its
    records and their aggregates are a function of."""
    last = next((t for t in reversed(turns) if t.action.tool_calls and any(items(c) for c in _ok(t))), None)
    if last is None:
        return ()
    call = last.action.tool_calls[0]
    tool = tools.get(call.name)
    sig = _signature(call, tool)
    return tuple(text for turn in turns if turn.action.tool_calls and _signature(turn.action.tool_calls[0], tool) == sig
                 for text in _ok(turn))


@functools.lru_cache(maxsize=2048)
def _listing_records(texts: tuple[str, ...]) -> tuple[tuple[dict[str, Any], ...], int]:
    """``(records, pages)`` of a listing's pages: their records, each once (the first of equal ones), in order.
    Cached by the pages' texts: shared, do not mutate."""
    records, keys = [], set()
    for text in texts:
        for k, r in _keyed_items(text):
            if k not in keys:
                keys.add(k)
                records.append(r)
    return tuple(records), len(texts)


@functools.lru_cache(maxsize=2048)
def _listing_aggregates(texts: tuple[str, ...]) -> tuple[tuple[Scalar, str], ...]:
    """:func:`_aggregates` of the records of a listing's pages (none without records); cached by the pages' texts."""
    records = list(_listing_records(texts)[0])
    return tuple(_aggregates(records)) if records else ()


@functools.lru_cache(maxsize=2048)
def _keyed_items(text: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """``(canonical JSON, record)`` of each record of a result (:func:`items`; cached by text: shared)."""
    return tuple((json.dumps(r, sort_keys=True, default=str), r) for r in items(text))


def _aggregates(records: list[dict[str, Any]]) -> Iterable[tuple[Scalar, str]]:
    """Count; sum / min / max of numeric fields; earliest / latest of date fields and their records' fields."""
    yield len(records), "agg_count"
    fields = list(dict.fromkeys(k for r in records for k in r))
    for f in fields:
        values = [r.get(f) for r in records]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            yield sum(values), f"agg_sum_{f}"
            yield min(values), f"agg_min_{f}"
            yield max(values), f"agg_max_{f}"
        elif all(is_date(v) for v in values):
            for pick, name in ((min, "earliest"), (max, "latest")):
                best = pick(records, key=lambda r: r[f])
                for g, v in best.items():
                    if isinstance(v, str | int) and not isinstance(v, bool) and shape(v) in ("name", "text", "date"):
                        yield v, f"agg_{name}_{f}_{g}"


def _answers(tools: dict[str, Tool], turns: list[Turn], prompt: str) -> Iterable[Keyed]:
    columns = asked_columns(prompt)
    if columns is not None and (table := table_answer(columns, (c for t in turns for c in _ok(t)))) is not None:
        yield *final_action(table), ("tag_answer", "tag_answer_table")
    texts = _listing_texts(tools, turns)
    state = f"tag_pages_{min(len(texts), 4)}"
    for value, tag in _listing_aggregates(texts):
        yield *final_action(str(value)), ("tag_answer", f"tag_{tag}", state)
    for text in (_ok(turns[-1]) if turns else ()):
        for v, kind, name in text_answers(text):
            yield *final_action(v), ("tag_answer", f"tag_answer_text_{kind}") + ((f"tag_field_{name}",) if name else ())
        for k, v in leaves(text)[:6]:
            yield *final_action(str(v)), ("tag_answer", "tag_answer_value", f"tag_value_{k}")
    yield *final_action("done"), ("tag_answer", "tag_answer_done")


def candidate_actions(task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> list[Action]:
    """The candidate actions at this turn (deterministic, deduplicated; see the module docstring)."""
    return [a for a, _ in tagged_candidates(task_view, initial, turns)]


def tagged_candidates(task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> list[Tagged]:
    """:func:`candidate_actions` with each candidate's tags; ``called_before`` / ``same_as_last`` added."""
    return [(a, tags) for _, a, tags in keyed_candidates(task_view, initial, turns)]


def keyed_candidates(task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> list[Keyed]:
    """:func:`tagged_candidates` with each candidate's :func:`~simrl.policies.action_keys.action_key` first (known
    while they are built: a caller that needs the keys need not compute them again)."""
    tools = {t.name: t for t in _read_tools_once(initial.tools)}
    prompt = task_view.get("prompt", initial.text)
    read = (tuple(t.ident for t in tools.values()), prompt, tuple(x for t in reversed(turns) for x in _ok(t)))
    calls = _BY_TEXTS.get(read)  # the values read are a function of the results' texts (_episode_values' walk)
    vals = None if calls is None else _LAZY
    if calls is None:
        vals = _values(tools, prompt, turns)
        calls = _all_calls(tools, prompt, vals)
        if len(_BY_TEXTS) >= 20_000:
            _BY_TEXTS.clear()
        _BY_TEXTS[read] = calls
    pool: dict[str, Keyed] = {}  # key -> the candidate, in order of first appearance

    def add(keyed: Iterable[Keyed], cap: int) -> None:
        n = 0
        for c in keyed:
            if n >= cap or len(pool) >= MAX_CANDIDATES:
                return
            if c[0] not in pool:
                pool[c[0]] = c
                n += 1

    add(_recovery(tools, turns), MAX_CANDIDATES)
    add(_answers(tools, turns, prompt), MAX_ANSWERS)
    room = MAX_CANDIDATES - len(pool)  # the tools' calls, taken in turn (add's loop, cap MAX_CANDIDATES: the room)
    for c in calls if room > 0 else ():
        if c[0] not in pool:
            pool[c[0]] = c
            room -= 1
            if not room:
                break
    add(_frontier(tools, turns), MAX_CANDIDATES)
    texts = candidate_pages.last_texts(turns)
    if texts:
        if vals is _LAZY:
            vals = _values(tools, prompt, turns)
        add(candidate_pages.listed(tools, turns, texts), MAX_CANDIDATES)
        named = lambda p: bool(vals.matching(p))  # noqa: E731 - an observed key names parameter p
        add(candidate_pages.refined(tools, prompt, texts, named), MAX_CANDIDATES)
        add(candidate_pages.dated(tools, turns, texts, named), MAX_CANDIDATES)
    done = {action_key(t.action) for t in turns}
    last = action_key(turns[-1].action) if turns else None
    if last is None:
        return list(pool.values())
    return [c if c[0] not in done else  # (k, a, tags) as it is unless a tag is added (k == last: k is in done)
            (c[0], c[1], c[2] + ("tag_called_before",) + (("tag_same_as_last",) if c[0] == last else ()))
            for c in pool.values()]


def clear_memos() -> None:
    """Forget every memoised result of candidate generation (the candidates are the same with or without them)."""
    for memo in (_CALLS, _ALL_CALLS, _BY_TEXTS, _SIGNATURES):
        memo.clear()
    for cached in (_read_tools_once, _keyed_items, _listing_records, _listing_aggregates):
        cached.cache_clear()
    action_keys.clear()


def project(action: Action, candidates: list[Action]) -> int | None:
    """The index of the candidate a demonstration ``action`` maps to: the same action, else the call of the
    same tool whose arguments are a subset of the action's (most arguments first); None when there is none.

    Demonstrations may set optional arguments the candidates leave out (``find_by_name(name, type)`` ->
    ``find_by_name(name)``) and wrap answers in markup; behaviour cloning learns the projection. A call with
    arguments never maps to the tool's call without any (``web_search(query=...)`` is not ``web_search()``,
    which does something else: here, an error).
    """
    keys = [action_key(c) for c in candidates]
    if (k := action_key(action)) in keys:
        return keys.index(k)
    if action.is_final:  # an answer in markup (``<answer>3</answer>``) maps to the bare answer
        bare = _MARKUP.sub("", action.answer or "").strip()
        return next((i for i, c in enumerate(candidates) if c.is_final and c.answer == bare), None)
    if len(action.tool_calls) != 1:
        return None
    call, best = action.tool_calls[0], None
    for i, c in enumerate(candidates):
        if len(c.tool_calls) == 1 and c.tool_calls[0].name == call.name:
            args = c.tool_calls[0].arguments
            if (args or not call.arguments) and all(call.arguments.get(p) == v for p, v in args.items()):
                if best is None or len(args) > len(candidates[best].tool_calls[0].arguments):
                    best = i
    return best
