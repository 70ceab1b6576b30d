"""Candidate calls built from the last TEXT result (a search engine's result list, a web page): every value it
lists, and queries that join a name read on it with the words of the prompt.

Two gaps of the other candidates (:mod:`simrl.policies.candidates`), both met by search agents:

* **Every listed value.** A one-parameter tool (``web_extractor(url)``) is offered at most
  :data:`~simrl.policies.candidates.MAX_VALUES` values of a parameter, the newest first, mixed with the prompt's
  values; a result list of 10 URLs left its last ones out. :func:`listed` offers each value of the last text result
  under a key that names the parameter (``url``), not yet passed to the tool, in the result's order (at most
  :data:`MAX_LISTED`, a search engine's page of results), tagged with its position (``tag_listed_7``).
* **Queries about a name read.** A free-text parameter (``web_search``'s ``query``: no observed key names it) is
  offered the prompt's values and the names read so far, each alone; a question about a name read on a page
  (who led the company that acquired X, at the time) is found only by a query that also says *what about* it,
  when the name alone ranks the answer's page below the engine's first page of results. :func:`refined` offers
  ``"{name} {phrase}"`` for the link texts of the last text result and the phrases of the prompt
  (:func:`prompt_phrases`: its runs of lower-case words outside stop words, e.g. ``chief executive``), phrase by
  phrase, at most :data:`MAX_REFINED`. The values come from what the policy read; nothing is chosen for it.

Only text results (not JSON) feed both: JSON listings are paged and walked by cursor, so the record tools'
candidates (the quickstart's) are unchanged. Deterministic; every size is bounded.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

from simrl.policies.action_keys import call_action
from simrl.policies.candidate_tables import date_years
from simrl.policies.features import is_json, leaves, prompt_values, tokens
from simrl.types import Turn

MAX_LISTED = 10
"""Most values of one text result offered to a one-parameter tool (a search engine's page: 10 results)."""
MAX_REFINED = 6
"""Most ``"{name} {phrase}"`` queries of a turn."""
MAX_YEARS = 20
"""Most ``"{query} {year}"`` queries of a turn (a page of 10 results writes about two dates each)."""
MAX_PHRASES = 3
"""Most phrases read off a prompt (in the prompt's order)."""
_WORD = re.compile(r"[A-Za-z][\w'-]*|[^\w\s]")
_TRAILING_YEAR = re.compile(r" \d{4}$")


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    """English stop words (bm25s's ``STOPWORDS_EN_PLUS``, NLTK's list: question words included)."""
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS)


@functools.lru_cache(maxsize=4096)
def prompt_phrases(prompt: str) -> tuple[str, ...]:
    """The prompt's runs of consecutive lower-case words that are not stop words, outside its values
    (:func:`~simrl.policies.features.prompt_values`), in order, deduplicated, at most :data:`MAX_PHRASES`.

    >>> prompt_phrases("Who was the chief executive of the company that acquired Acme Ltd at the time?")
    ('chief executive', 'company', 'acquired')
    >>> prompt_phrases("In which city was Ann Lee born?")
    ('city', 'born')
    """
    text = prompt
    for _, value in prompt_values(prompt):
        text = text.replace(str(value), " . ")
    stop, runs, run = _stop_words(), [], []
    for word in [*_WORD.findall(text), "."]:
        if word[:1].islower() and word not in stop:
            run.append(word)
        elif run:
            runs.append(" ".join(run))
            run = []
    return tuple(dict.fromkeys(runs))[:MAX_PHRASES]


def last_texts(turns: list[Turn]) -> list[str]:
    """The successful text (not JSON) results of the last turn (what :func:`listed`, :func:`refined` and
    :func:`dated` read; computed once a turn by the caller: each JSON result is parsed to tell)."""
    if not turns:
        return []
    return [r.content for r in turns[-1].step.observation.results if not r.is_error and not is_json(r.content)]


def listed(tools: dict, turns: list[Turn], texts: list[str]) -> Iterable[tuple]:
    """Keyed candidates (key, action, tags): each one-parameter tool called with every value of the last text result
    (``texts``: :func:`last_texts`) under a key that shares a word with its parameter, not yet passed to it (at most
    :data:`MAX_LISTED`)."""
    if not texts:
        return
    for tool in tools.values():
        p = tool.required[0] if len(tool.required) == 1 else None
        if p is None or tool.kind(p) != "string" or "enum" in tool.params.get(p, {}):
            continue
        done = {c.arguments.get(p) for t in turns for c in t.action.tool_calls if c.name == tool.name}
        values = [v for text in texts for k, v in leaves(text) if isinstance(v, str) and tokens(k) & tokens(p)]
        for rank, v in enumerate(list(dict.fromkeys(values))[:MAX_LISTED], 1):
            if v not in done:
                yield *call_action(tool.name, {p: v}), (f"tag_call_{tool.name}", f"src_{p}_listed", f"tag_listed_{rank}")


def _free(tool: Any, named: Callable[[str], bool]) -> list[str]:
    """A tool's free-text parameters: strings without an enum that no observed key names (``named``), among those its
    calls fill (its required ones, or each optional one of a tool that requires nothing)."""
    return [p for p in tool.required or tool.optional()
            if tool.kind(p) == "string" and "enum" not in tool.params.get(p, {}) and not named(p)]


def refined(tools: dict, prompt: str, texts: list[str], named: Callable[[str], bool]) -> Iterable[tuple]:
    """Keyed candidates (key, action, tags): ``"{name} {phrase}"`` for the link texts of the last text result
    (``texts``: :func:`last_texts`) and the prompt's phrases, phrase by phrase (at most :data:`MAX_REFINED`), passed
    to each free-text parameter (:func:`_free`; ``named``: whether an observed key names a parameter)."""
    names = list(dict.fromkeys(v for text in texts for k, v in leaves(text) if k == "link" and isinstance(v, str)))
    if not names:
        return
    queries = [f"{name} {phrase}" for phrase in prompt_phrases(prompt) for name in names][:MAX_REFINED]
    for tool in tools.values():
        for p in _free(tool, named):
            for q in queries:
                yield *call_action(tool.name, {p: q}), (f"tag_call_{tool.name}", f"src_{p}_refined", "tag_refined")


def dated(tools: dict, turns: list[Turn], texts: list[str], named: Callable[[str], bool]) -> Iterable[tuple]:
    """Keyed candidates (key, action, tags): the last call, when it passed a free-text value (a query) and its result is
    text, again with that value ending in each year of the dates its result writes (a year it ended in replaced), at
    most :data:`MAX_YEARS`: a search narrowed to a time (who led the company in 1999) when the first page of results
    lists the wrong decades. ``texts``: :func:`last_texts`."""
    call = turns[-1].action.tool_calls[0] if texts and turns[-1].action.tool_calls else None
    tool = tools.get(call.name) if call is not None else None
    if tool is None:
        return
    for p in _free(tool, named):
        value = call.arguments.get(p)
        if not isinstance(value, str):
            continue
        base = _TRAILING_YEAR.sub("", value)
        for year in list(dict.fromkeys(y for text in texts for y in date_years(text)))[:MAX_YEARS]:
            yield *call_action(tool.name, {p: f"{base} {year}"}), (f"tag_call_{tool.name}", f"src_{p}_year", "tag_dated")
