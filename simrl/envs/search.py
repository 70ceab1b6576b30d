"""Search over a world's corpus: a bm25s index, the ``web_search`` / ``web_extractor`` tools, and
:class:`SearchEnv`.

The index is BM25 (bm25s, Lucene variant, k1 = 1.5, b = 0.75) over ``title + text`` of every
:class:`~simrl.world.schema.Document` in ``corpus.jsonl``, markdown links reduced to their text;
tokens are lower-cased ``\\w\\w+`` words minus bm25s's English stop words, no stemming. It is built
once and cached in ``<world>/.index/bm25s-v1-<corpus sha256[:16]>/`` (bm25s's own save format plus
URLs, title keys and line offsets), so a second start only loads arrays (0.3 s at 230k pages).
Queries are scored straight from bm25s's CSC score matrix (``np.bincount`` over the query terms'
postings, then an exact top-k pruned by a bound from the rarest terms: about 0.25 ms at 230k pages,
where bm25s's ``retrieve`` with the numpy backend takes about 7 ms); ties break by corpus order, so
the same world and query always give the same ranking. A page whose title has exactly the query's
tokens gets the query's best score added, so a navigational query finds its page first.

The tools follow Qwen-AgentWorld's search tools: ``web_search`` takes ``{"query": str}`` or
``{"queries": [str]}`` and lays out 10 results per query as ``[k] URL`` then ``Title:``,
``Snippet:`` and ``Date:`` lines; ``web_extractor`` takes ``{"url": str}`` and returns the page as
markdown, or a ``404 Not Found`` error result like a failed fetch.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from simrl.envs.base import Environment, register, unavailable_step
from simrl.errors import SimrlError
from simrl.reward.task import score_answer
from simrl.types import Action, Observation, Step, ToolCall, ToolResult
from simrl.world.io import load_manifest
from simrl.world.schema import Document, Task

CACHE_FORMAT = "bm25s-v1"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_RULE = re.compile(r"^\|[-:| ]+\|[ \t]*$\n?", re.MULTILINE)
_ROW = re.compile(r"^\|(.*)\|[ \t]*$", re.MULTILINE)
_MARKS = re.compile(r"^(?:#+|[-*])[ \t]+|^\*|\*$", re.MULTILINE)


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


_STOP = _stopwords()


def tokenize(text: str) -> list[str]:
    """Index/query tokens of ``text``: lower-cased ``\\w\\w+`` words without English stop words."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def plain_text(markdown: str) -> str:
    """A page's markdown as plain lines, without its leading ``# Title`` heading: links -> their
    text, table rules dropped, table cells as ``a: b``, heading / list / emphasis marks removed."""
    if markdown.startswith("# "):
        markdown = markdown.partition("\n")[2]
    text = _RULE.sub("", _LINK.sub(r"\1", markdown))
    text = _ROW.sub(lambda m: ": ".join(c.strip() for c in m.group(1).split("|") if c.strip()), text)
    return _MARKS.sub("", text)


def _occurrences(low: str, terms: Sequence[str], limit: int = 200) -> list[tuple[int, str]]:
    """``(position, term)`` of whole-word occurrences of ``terms`` in lower-cased ``low``, in order."""
    hits = []
    for term in terms:
        i = low.find(term)
        while i >= 0 and len(hits) < limit:
            j = i + len(term)
            if (i == 0 or not (low[i - 1].isalnum() or low[i - 1] == "_")) and \
                    (j == len(low) or not (low[j].isalnum() or low[j] == "_")):
                hits.append((i, term))
            i = low.find(term, j)
    return sorted(hits)


def snippet(text: str, terms: Sequence[str], width: int = 200) -> str:
    """About ``width`` characters of ``text`` (plain, one line) around the most query ``terms``.

    ``terms`` are query tokens (:func:`tokenize`). The window starts at a term occurrence and
    covers the most distinct terms (then the most occurrences, then the earliest); without a match
    it is the start of the text. Cut ends get ``...``.
    """
    flat = " ".join(text.split())
    hits = _occurrences(flat.lower(), terms)
    best, key = 0, (0, 0)
    for i, (pos, _) in enumerate(hits):
        inside = []
        for p, term in hits[i:]:
            if p >= pos + width - 40:
                break
            inside.append(term)
        if (len(set(inside)), len(inside)) > key:
            best, key = pos, (len(set(inside)), len(inside))
    start = max(0, min(best - 40, len(flat) - width))  # a full window, context before the terms
    if start:
        start = flat.find(" ", start) + 1 or start
    end = min(len(flat), start + width)
    if end < len(flat) and flat.rfind(" ", start, end) > start:
        end = flat.rfind(" ", start, end)
    return ("..." if start else "") + flat[start:end].strip() + ("..." if end < len(flat) else "")


class SearchHit(BaseModel):
    """One search result: page URL, title, snippet (~200 chars), ISO date (news only) and BM25 score."""

    model_config = ConfigDict(frozen=True)

    url: str
    title: str
    snippet: str
    date: str | None = None
    score: float


class SearchIndex:
    """A bm25s index over one world's corpus; thread-safe for reads.

    Make one with :meth:`open`. Documents are numbered by their line in ``corpus.jsonl`` and read
    from that file on demand (by byte offset), so memory holds only the score matrix and URLs.
    """

    def __init__(self, world: Path, scores: dict[str, Any], vocab: dict[str, int],
                 offsets: np.ndarray, urls: list[str], titles: list[str]) -> None:
        self.world = world
        self._data, self._indices = scores["data"], scores["indices"]
        self._indptr, self._n = scores["indptr"], int(scores["num_docs"])
        self._df = np.diff(self._indptr)
        self._vocab, self._offsets, self._urls = vocab, offsets, urls
        self._by_url = {u: i for i, u in enumerate(urls)}
        self._titles = titles
        self._by_title: dict[str, list[int]] = {}
        for i, key in enumerate(titles):
            self._by_title.setdefault(key, []).append(i)
        self._file = (world / "corpus.jsonl").open("rb")

    # -- building and loading ---------------------------------------------------------------------
    @classmethod
    def open(cls, world: str | Path, *, cache: bool = True, cache_dir: str | Path | None = None,
             progress: Callable[[str], None] | None = None) -> SearchIndex:
        """Load the cached index of ``world`` or build it (and cache it when ``cache``).

        Args:
            world: a world folder (``simrl world generate``).
            cache: read/write the on-disk cache; an unwritable folder only skips writing.
            cache_dir: parent folder of the cache (default ``<world>/.index``).
            progress: called with one-line status messages (building, loading, cache problems).

        Raises:
            SimrlError: ``world`` is not a world folder or its corpus is empty.
        """
        world, say = Path(world), progress or (lambda _msg: None)
        digest = load_manifest(world).files.get("corpus.jsonl", "nohash")
        if not (world / "corpus.jsonl").is_file():
            raise SimrlError(f"{world} is not a world folder (no corpus.jsonl)")
        folder = Path(cache_dir or world / ".index") / f"{CACHE_FORMAT}-{digest[:16]}"
        if cache and (folder / "urls.json").is_file():
            try:
                say(f"loading search index from {folder}")
                return cls._load(world, folder)
            except (OSError, ValueError, KeyError) as err:
                say(f"cached index unreadable ({err}); rebuilding")
        say(f"building search index over {world / 'corpus.jsonl'}")
        index, retriever = cls._build(world)
        if cache:
            try:
                index._save(folder, retriever)
            except OSError as err:
                say(f"could not cache the index in {folder}: {err}")
        return index

    @classmethod
    def _build(cls, world: Path) -> tuple[SearchIndex, Any]:
        import bm25s

        ids: list[list[int]] = []
        vocab: dict[str, int] = {}
        offsets, urls, titles = [0], [], []
        with (world / "corpus.jsonl").open("rb") as f:
            for line in f:
                doc = json.loads(line)
                offsets.append(offsets[-1] + len(line))
                urls.append(doc["url"])
                titles.append(" ".join(tokenize(doc["title"])))
                words = tokenize(doc["title"] + "\n" + _LINK.sub(r"\1", doc["text"]))
                ids.append([vocab.setdefault(w, len(vocab)) for w in words])
        if not urls or not vocab:
            raise SimrlError(f"the corpus of {world} is empty; regenerate the world")
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), create_empty_token=False,
                        show_progress=False)
        index = cls(world, retriever.scores, vocab, np.asarray(offsets, dtype=np.int64), urls, titles)
        return index, retriever

    def _save(self, folder: Path, retriever: Any) -> None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            retriever.save(str(tmp), show_progress=False)
            np.save(tmp / "offsets.npy", self._offsets)
            (tmp / "titles.json").write_text(json.dumps(self._titles), encoding="utf-8")
            (tmp / "urls.json").write_text(json.dumps(self._urls), encoding="utf-8")
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def _load(cls, world: Path, folder: Path) -> SearchIndex:
        import bm25s

        retriever = bm25s.BM25.load(str(folder), show_progress=False)
        urls = json.loads((folder / "urls.json").read_text(encoding="utf-8"))
        titles = json.loads((folder / "titles.json").read_text(encoding="utf-8"))
        offsets = np.load(folder / "offsets.npy")
        if not len(urls) + 1 == len(offsets) == len(titles) + 1 == retriever.scores["num_docs"] + 1:
            raise ValueError("cache files disagree on the number of documents")
        return cls(world, retriever.scores, retriever.vocab_dict, offsets, urls, titles)

    # -- queries ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def close(self) -> None:
        """Close the corpus file (idempotent)."""
        self._file.close()

    def rank(self, query: str, k: int = 10) -> list[tuple[int, float]]:
        """Top ``k`` ``(doc number, score)`` with score > 0, best first, ties by corpus order.

        The score is BM25, plus the best BM25 score of the query for pages whose title has exactly
        the query's tokens (a navigational query finds its page first).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        words = tokenize(query)
        terms = [self._vocab[w] for w in words if w in self._vocab]
        terms = [t for t in terms if t < len(self._df)]
        if not terms:
            return []
        spans = [(self._indptr[t], self._indptr[t + 1]) for t in terms]
        scores = np.bincount(np.concatenate([self._indices[a:b] for a, b in spans]),
                             weights=np.concatenate([self._data[a:b] for a, b in spans]), minlength=self._n)
        same_title = self._by_title.get(" ".join(words))
        if same_title:
            scores[same_title] += scores.max()
        seed = None  # k documents of the rarest terms: their k-th best score bounds the k-th best overall
        for t in sorted(set(terms), key=lambda t: (self._df[t], t)):
            docs = self._indices[self._indptr[t]:self._indptr[t + 1]]
            seed = docs if seed is None else np.union1d(seed, docs)
            if len(seed) >= k:
                break
        if len(seed) >= k:
            cand = np.flatnonzero(scores >= np.partition(scores[seed], len(seed) - k)[len(seed) - k])
        else:
            cand = np.flatnonzero(scores > 0)
        order = np.lexsort((cand, -scores[cand]))[:k]
        return [(int(i), float(scores[i])) for i in cand[order]]

    def raw(self, i: int) -> dict[str, Any]:
        """Document number ``i`` as the JSON object of its ``corpus.jsonl`` line."""
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        return json.loads(os.pread(self._file.fileno(), b - a, a))

    def document(self, i: int) -> Document:
        """Document number ``i`` (line ``i`` of ``corpus.jsonl``)."""
        return Document.model_validate(self.raw(i))

    def page(self, url: str) -> Document | None:
        """The page at ``url`` (exact, or without a ``#fragment`` / trailing slash), else ``None``."""
        url = url.strip().split("#", 1)[0]
        i = self._by_url.get(url, self._by_url.get(url.rstrip("/")))
        return None if i is None else self.document(i)

    def search(self, query: str, k: int = 10) -> list[SearchHit]:
        """The top ``k`` pages for ``query`` (fewer when fewer match; ``[]`` when none does)."""
        terms = sorted(set(tokenize(query)))
        hits = []
        for i, score in self.rank(query, k):
            doc = self.raw(i)
            hits.append(SearchHit(url=doc["url"], title=doc["title"], date=doc.get("date"), score=score,
                                  snippet=snippet(plain_text(doc["text"]), terms)))
        return hits

    def search_many(self, queries: Sequence[str], k: int = 10, n_threads: int = 1) -> list[list[SearchHit]]:
        """:meth:`search` for each query, in order; ``n_threads > 1`` spreads them over threads."""
        if n_threads <= 1 or len(queries) < 2:
            return [self.search(q, k) for q in queries]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_threads) as pool:
            return list(pool.map(lambda q: self.search(q, k), queries))


# -- tools (Qwen-AgentWorld search tool layout) -------------------------------------------------------
RESULTS_PER_QUERY = 10
MAX_QUERIES = 20
SEARCH_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "web_search",
        "description": "Search the web. Returns up to 10 results per query, each with URL, title, snippet "
                       "and date. Give one query, or several at once as `queries`.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "The search query."},
            "queries": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_QUERIES,
                        "description": "Several search queries, answered one block each."}},
            "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "web_extractor",
        "description": "Fetch a web page by URL (e.g. one from a search result) and return its content "
                       "as markdown.",
        "parameters": {"type": "object", "properties": {
            "url": {"type": "string", "description": "The page URL."}},
            "required": ["url"], "additionalProperties": False}}},
]
"""OpenAI function-format schemas of the two search tools."""


def _queries(args: dict[str, Any]) -> list[str]:
    extra = set(args) - {"query", "queries"}
    if extra:
        raise ValueError(f"unknown argument(s) {sorted(extra)}; web_search takes `query` or `queries`")
    if ("query" in args) == ("queries" in args):
        raise ValueError("give exactly one of `query` (a string) or `queries` (a list of strings)")
    raw = args.get("query", args.get("queries"))
    items = [raw] if isinstance(raw, str) and "query" in args else raw  # `query` may be a list too
    if not isinstance(items, list) or not items or not all(isinstance(q, str) and q.strip() for q in items):
        raise ValueError("`query` must be a non-empty string and `queries` a non-empty list of them")
    if len(items) > MAX_QUERIES:
        raise ValueError(f"at most {MAX_QUERIES} queries per call, got {len(items)}")
    return [q.strip() for q in items]


def format_results(query: str, hits: list[SearchHit]) -> str:
    """One query's results block: a header line, then ``[k] URL`` / ``Title:`` / ``Snippet:`` / ``Date:``."""
    if not hits:
        return f"No results found for '{query}'. Try a shorter or different query."
    lines = [f"A search for '{query}' found {len(hits)} results:"]
    for n, h in enumerate(hits, 1):
        lines += ["", f"[{n}] {h.url}", f"Title: {h.title}", f"Snippet: {h.snippet}", f"Date: {h.date or 'N/A'}"]
    return "\n".join(lines)


def web_search(index: SearchIndex, args: dict[str, Any]) -> ToolResult:
    """Run ``web_search``: 10 results per query, one block per query.

    Raises:
        ValueError: bad arguments (the message says which and how to fix them).
    """
    queries = _queries(args)
    blocks = [format_results(q, h) for q, h in zip(queries, index.search_many(queries, RESULTS_PER_QUERY))]
    return ToolResult(name="web_search", content="\n\n=======\n\n".join(blocks))


def web_extractor(index: SearchIndex, args: dict[str, Any]) -> ToolResult:
    """Run ``web_extractor``: the page at ``url`` as markdown (Jina-reader-like header), or an
    ``is_error`` result ``404 Not Found: <url>`` like a failed fetch.

    Raises:
        ValueError: bad arguments (anything but one non-empty string ``url``).
    """
    url = args.get("url")
    if set(args) - {"url"} or not isinstance(url, str) or not url.strip():
        raise ValueError("web_extractor takes one argument, `url` (a non-empty string)")
    doc = index.page(url)
    if doc is None:
        return ToolResult(name="web_extractor", is_error=True,
                          content=f"404 Not Found: {url.strip()} (no page at this address)")
    head = f"Title: {doc.title}\n\nURL Source: {doc.url}\n\n"
    if doc.date:
        head += f"Published Time: {doc.date}\n\n"
    return ToolResult(name="web_extractor", content=head + "Markdown Content:\n" + doc.text)


TOOLS: dict[str, Callable[[SearchIndex, dict[str, Any]], ToolResult]] = {
    "web_search": web_search, "web_extractor": web_extractor}


def run_tool(index: SearchIndex, name: str, args: dict[str, Any]) -> ToolResult:
    """Run tool ``name`` on ``args``.

    Raises:
        KeyError: unknown tool.
        ValueError: bad arguments.
    """
    if name not in TOOLS:
        raise KeyError(f"unknown tool {name!r}; available: {', '.join(TOOLS)}")
    return TOOLS[name](index, args)


def call_tool(index: SearchIndex, call: ToolCall) -> ToolResult:
    """Run one tool call; an unknown tool or bad arguments give an ``is_error`` result, never an exception."""
    try:
        result = run_tool(index, call.name, dict(call.arguments))
    except KeyError as err:
        result = ToolResult(name=call.name, content=f"Error: {err.args[0]}", is_error=True)
    except ValueError as err:
        result = ToolResult(name=call.name, content=f"Error: {err}", is_error=True)
    return result.model_copy(update={"call_id": call.call_id})


# -- environment --------------------------------------------------------------------------------------
class SearchEnv(Environment):
    """Answer a world's ``qa`` / ``table`` tasks by searching its corpus (``env_id = "search"``).

    ``reset(task)`` shows only the task prompt (its :meth:`~simrl.world.schema.Task.policy_view`)
    and :data:`SEARCH_TOOLS`; ``step`` runs tool calls (one :class:`ToolResult` each, errors as
    ``is_error`` results) or scores a final answer with :func:`simrl.reward.task.score_answer`
    (``terminated``, reward in [0, 1]). After ``max_turns`` steps without an answer the episode is
    ``truncated``.

    Args:
        world: the world folder whose corpus is searched.
        max_turns: steps allowed per episode (tool-call turns plus the answer); None (default): no
            limit of its own (the rollout loop's ``max_turns`` applies).
        index: a shared, already opened :class:`SearchIndex` (else opened on first reset, cached).

    Raises:
        SimrlError: ``world`` is not a world folder.
    """

    env_id = "search"

    def __init__(self, world: str | Path, max_turns: int | None = None, index: SearchIndex | None = None) -> None:
        self.world = Path(world)
        load_manifest(self.world)
        if max_turns is not None and max_turns < 1:
            raise SimrlError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns = max_turns
        self._index, self._own_index = index, index is None
        self._task: Task | None = None
        self._turns, self._done, self._closed = 0, False, False

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        """Start an episode on a ``qa`` or ``table`` task; returns its prompt and the tool schemas.

        Raises:
            SimrlError: a ``records`` task (its data is in the record server: use env ``mcp-world``),
                or the environment is closed.
        """
        if self._closed:
            raise SimrlError("this search environment is closed; make a new one")
        if task.type == "records":
            raise SimrlError(f"task {task.task_id} is a records task: its data lives in the world's record "
                             "server, not the corpus; run it with env `mcp-world`")
        if self._index is None:
            self._index = await asyncio.to_thread(SearchIndex.open, self.world)
        self._task, self._turns, self._done = task, 0, False
        return Observation(text=task.policy_view()["prompt"], tools=SEARCH_TOOLS)

    async def step(self, action: Action) -> Step:
        """Apply ``action``: run its tool calls, or score its final answer (which ends the episode)."""
        if (over := unavailable_step(self._closed, self._task is not None, self._done)) is not None:
            return over
        self._turns += 1
        if action.is_final:
            score = score_answer(self._task, action.answer or "")
            self._done = True
            return Step(observation=Observation(text="Answer received."), reward=score.reward, terminated=True,
                        info={"success": score.success, "metrics": score.metrics, "turns": self._turns})
        if action.tool_calls:
            results = await asyncio.to_thread(lambda: [call_tool(self._index, c) for c in action.tool_calls])
            text = "\n\n".join(r.content for r in results)
        else:
            results, text = [], "Error: the action has neither tool calls nor an answer"
        truncated = self.max_turns is not None and self._turns >= self.max_turns
        self._done = truncated
        info = {"turns": self._turns} | ({"truncated_reason": "max_turns"} if truncated else {})
        return Step(observation=Observation(text=text, results=results), truncated=truncated, info=info)

    async def close(self) -> None:
        """End the environment; closes the index it opened itself (a second call does nothing)."""
        if not self._closed and self._own_index and self._index is not None:
            self._index.close()
        self._closed = True


register("search", SearchEnv, "Search over a world's corpus (web_search, web_extractor; bm25s)")
