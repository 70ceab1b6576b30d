"""Reading observations as text, and the text features of a state and of a candidate action.

Two halves, both pure functions of text (no world access, no gold):

* **Reading.** The entity names of a task prompt (the prompt *formats* of
  :mod:`simrl.world.templates` are public knowledge of the task family: a policy may know how a
  question is phrased, not its answer), a record tool's JSON page (tolerant of the renamed fields of
  schema drift: :func:`simrl.policies.records_expert.read_page`), search results
  (:func:`simrl.policies.expert.parse_search_results`) and a fetched page (title, infobox rows, links,
  news date).
* **Featurising.** :func:`state_text` renders the prompt and a compact recent history (last action,
  flags read off the last observation, a trimmed copy of it); :func:`action_text` renders a candidate
  (tool, argument names and values, the tags that say where it came from). :class:`Hasher` turns text
  into hashed word uni- and bi-gram ids (CRC-32, stable across processes, unlike ``hash``), the input of
  the ``EmbeddingBag`` encoders of :class:`simrl.train.policy.ScorerPolicy` (DRRN, He et al., 2016).
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from simrl.types import Action, Observation, Turn

_QA_FORMATS = [
    "In which city was {name} born?", "In which city is {name} headquartered?", "In what year was {name} founded?",
    "Which company makes {name}?", "Who created the {kind} {name}?", "In which city was {name} held?",
    "Which company acquired {name}?", "On what date was {name} acquired?", "In which country was {name} born?",
    "In which city is the company that makes {name} headquartered?",
    "In which city was the creator of the {kind} {name} born?", "In which country did {name} take place?",
    "Who was the chief executive of the company that acquired {name} at the time of the acquisition?",
    "In which country is the company that makes {name} headquartered?",
    "In which country was the creator of the {kind} {name} born?", "In which country was the founder of {name} born?",
    "In which country is the publisher of the {kind} {name} headquartered?",
    "In which country was the founder of the company that makes {name} born?",
    "In which country is the company that acquired the maker of {name} headquartered?",
    "In which country was the founder of the organizer of {name} born?",
    "List every organization headquartered in {name}.", "List every product made by {name}.",
    "List every person born in {name}.", "List every chief executive {name} has had,", "List every city of {name} with",
]
_RECORDS_FORMATS = [
    "How many people are recorded as members of {organization}, past and present?",
    "What is the total number of employees of all organizations headquartered in {city}?",
    "Which product of {organization} was released first?",
    "{organization} has moved its headquarters to {city}. Update its record.",
    "{organization} now has {n} employees. Update its record.",
    "Record that {person} became a member of {organization} on {date}.",
]
_KIND = r"(?:novel|film|album|painting|play|poetry collection|\w+)"


def _compile(fmt: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", fmt)
    out = []
    for part in parts:
        if part == "{kind}":
            out.append(_KIND)
        elif part.startswith("{"):
            out.append(f"(?P<{part[1:-1]}>.+?)")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


_PATTERNS = [_compile(f) for f in sorted(_RECORDS_FORMATS + _QA_FORMATS, key=len, reverse=True)]  # specific first
_SPAN = re.compile(r"[A-Z][\w'.-]*(?:(?:,? (?:and|of|the|de|&) |, | )[A-Z0-9][\w'.-]*)*")
_LEAD = {"In", "Which", "Who", "What", "On", "How", "Record", "List", "Use", "Update", "The", "A", "An"}
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
_ROW = re.compile(r"^\|\s*([^|]+?)\s*\|\s*(.*?)\s*\|\s*$")
_LONG_DATE = re.compile(r"\b(January|February|March|April|May|June|July|August|September|October|November|"
                        r"December) (\d{1,2}), (\d{4})\b")
_MONTHS = {m: i for i, m in enumerate(("January", "February", "March", "April", "May", "June", "July", "August",
                                         "September", "October", "November", "December"), start=1)}
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_WORD = re.compile(r"[a-z0-9_]+")


@functools.lru_cache(maxsize=4096)
def prompt_entities(prompt: str) -> list[tuple[str, str | None]]:
    """``(name, entity type or None)`` of the names in a task prompt, in prompt order.

    Known prompt formats give typed names (``records`` tasks: ``organization`` / ``city`` / ``person``)
    or untyped ones (``qa`` / ``table``); any other prompt falls back to its capitalised word spans.

    >>> prompt_entities("Record that Ann Lee became a member of Acme Ltd on 2020-01-02. Use the record tools.")
    [('Ann Lee', 'person'), ('Acme Ltd', 'organization')]
    """
    for pattern in _PATTERNS:
        m = pattern.search(prompt)
        if m:
            groups = sorted((m.start(g), g) for g in m.groupdict() if g not in ("n", "date"))
            return [(m.group(g).strip(), None if g == "name" else g) for _, g in groups]
    spans = []
    for span in _SPAN.findall(prompt):
        words = span.rstrip(".,").split(" ")
        while words and words[0] in _LEAD:
            words = words[1:]
        if words:
            spans.append((" ".join(words), None))
    return list(dict.fromkeys(spans))[:4]


def prompt_numbers(prompt: str) -> tuple[list[int], list[str]]:
    """``(integers, ISO dates)`` written in a prompt (integers inside dates excluded)."""
    dates = _ISO_DATE.findall(prompt)
    rest = _ISO_DATE.sub(" ", prompt)
    return [int(n) for n in re.findall(r"\b\d+\b", rest)], dates


def iso_date(text: str) -> str | None:
    """``"May 28, 1970"`` -> ``"1970-05-28"`` (also an ISO date as is); None when there is none."""
    m = _LONG_DATE.search(text)
    if m:
        return f"{int(m.group(3)):04d}-{_MONTHS[m.group(1)]:02d}-{int(m.group(2)):02d}"
    iso = _ISO_DATE.search(text)
    return iso.group(0) if iso else None


@dataclass
class Page:
    """A fetched page: title, infobox rows ``(label, value text, [(link text, url)])``, body links, date."""

    title: str = ""
    kind: str = ""
    rows: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    date: str | None = None


@functools.lru_cache(maxsize=512)
def parse_page(text: str) -> Page | None:
    """The parts of a ``web_extractor`` page (tolerant of relabelled header lines); None for other text.

    Cached by text: the result is shared, do not mutate it.
    """
    if "Markdown Content:" not in text and "\nContent:" not in text and not text.startswith("# "):
        return None
    page = Page()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# ") and not page.title:
            page.title = line[2:].strip()
        elif re.match(r"^(?:Page )?[Tt]itle: ", line) and not page.title:
            page.title = line.split(": ", 1)[1].strip()
        elif line.startswith("*") and line.endswith("*") and page.date is None:
            page.date = iso_date(line)
        row = _ROW.match(line)
        if row and not set(row.group(1)) <= set("-: "):
            label, value = row.group(1), row.group(2)
            if value == "" and not page.kind:
                page.kind = label.lower()
            elif value:
                page.rows.append((label, _LINK.sub(r"\1", value), _LINK.findall(value)))
        elif not row:
            page.links += _LINK.findall(line)
    return page


@functools.lru_cache(maxsize=512)
def parse_search_results(text: str) -> list[tuple[str, str]]:
    """``(url, title)`` of ``web_search`` results (:func:`simrl.policies.expert.parse_search_results`),
    cached by text: the result is shared, do not mutate it."""
    from simrl.policies.expert import parse_search_results as parse

    return parse(text)


def label_token(label: str) -> str:
    """An infobox label as one token: ``"Chief executive"`` -> ``"chief_executive"``."""
    return "_".join(label.lower().split())


@functools.lru_cache(maxsize=512)
def read_records(text: str) -> tuple[list[dict[str, Any]], str | None] | None:
    """``(records, next cursor)`` of a record tool's JSON page (renamed fields allowed), else None.

    Cached by text: the result is shared, do not mutate it.
    """
    from simrl.policies.records_expert import read_page

    try:
        records, cursor = read_page(text)
    except (ValueError, AttributeError, TypeError):
        return None
    return [r for r in records if isinstance(r, dict)], cursor if isinstance(cursor, str) and cursor else None


def obs_flags(obs: Observation) -> list[str]:
    """Flags of an observation read off its text: errors (kind), next cursor, empty, notices of more content."""
    flags, text = [], obs.text
    if any(r.is_error for r in obs.results):
        flags.append("flag_error")
        for code in ("422", "429", "500", "502", "503", "504", "404"):
            if code in text:
                flags.append(f"flag_error_{code}")
        if "timed out" in text or "did not answer" in text:
            flags.append("flag_error_timeout")
    for r in obs.results:
        page = read_records(r.content)
        if page is not None:
            flags += ["flag_page", "flag_next_cursor" if page[1] else "flag_last_page"]
            if not page[0]:
                flags.append("flag_empty")
    checks = {"[response truncated at": "flag_truncated", "more results not shown": "flag_more_results",
              "[output cut short": "flag_cut_short", '"page":': "flag_page_notice", "No results found": "flag_empty"}
    flags += [flag for needle, flag in checks.items() if needle in text]
    return list(dict.fromkeys(flags))


def shape(value: Any) -> str:
    """The words of a value that generalise across worlds: lower-case words kept, names, ids and numbers
    replaced by their kind (``"Acme acquires Foo Ltd"`` -> ``"name acquires name"``, an id -> its type,
    ``2020-01-02`` -> ``date``, ``17`` -> ``number``); dicts as ``key value`` pairs."""
    if isinstance(value, dict):
        return " ".join(f"{k} {shape(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return " ".join(shape(v) for v in value)
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int | float):
        return "number"
    words = []
    for word in str(value).replace("<answer>", " ").replace("</answer>", " ").split():
        if _ISO_DATE.fullmatch(word):
            words.append("date")
        elif re.fullmatch(r"[a-z_]+:\d+(?::.*)?", word):
            words.append(word.split(":")[0])
        elif word.isdigit():
            words.append("year" if len(word) == 4 else "number")
        elif word[:1].islower():
            words.append(word)
        elif not words or words[-1] != "name":
            words.append("name")
    return " ".join(words)


def _call_words(action: Action) -> str:
    if action.is_final:
        return f"answer {shape(action.answer)}"
    out = []
    for call in action.tool_calls:
        out.append(f"{call.name} " + " ".join(f"{k} {shape(v)}" for k, v in call.arguments.items()))
    return " ; ".join(out)


def state_text(task_view: dict[str, str], initial: Observation, turns: list[Turn], *, trim: int = 0,
               error_trim: int = 160) -> str:
    """The text the state encoder reads: prompt, turn count, tools used, last action, flags, last observation.

    The last observation enters as its flags (:func:`obs_flags`), a fetched page's kind and title, and
    its first ``trim`` characters (``error_trim`` for an error result); the prompt's names become
    ``name``. Raw result text (names, ids) only dilutes the mean-pooled bag: measured with behaviour
    cloning on the tiny world, greedy qa success was 0.63-0.73 with 300 characters, 0.80-0.83 with none.
    """
    parts = [f"type_{task_view.get('type', '')}", _generic_prompt(task_view.get("prompt", initial.text)),
             f"turn_{min(len(turns), 12)}"]
    used = [c.name for t in turns for c in t.action.tool_calls]
    parts += [f"used_{name}" for name in dict.fromkeys(used)]
    parts.append(f"calls_{min(len(used), 12)}")
    if any(t.action.tool_calls and t.action.tool_calls[0].name in _WRITES and t.step.observation.results
           and not t.step.observation.results[0].is_error for t in turns):
        parts.append("flag_wrote")
    if turns:
        last = turns[-1]
        parts.append("last " + _call_words(last.action))
        parts += obs_flags(last.step.observation)
        page = parse_page(last.step.observation.text)
        if page is not None:
            parts.append(f"page_kind_{page.kind or 'none'} page_title {shape(page.title)}")
        error = any(r.is_error for r in last.step.observation.results)
        parts.append(last.step.observation.text[:error_trim if error else trim])
    return "\n".join(parts)


@functools.lru_cache(maxsize=4096)
def _generic_prompt(prompt: str) -> str:
    """The prompt with its entity names replaced by ``name`` (names do not generalise; the phrasing does)."""
    for name, _ in prompt_entities(prompt):
        prompt = prompt.replace(name, "name")
    return prompt


_WRITES = ("update_record", "add_membership", "end_membership", "appoint_ceo")


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
