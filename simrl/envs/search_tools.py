"""The ``web_search`` / ``web_extractor`` tools over a :class:`~simrl.envs.search_index.SearchIndex`.

The tools follow Qwen-AgentWorld's search tools: ``web_search`` takes ``{"query": str}`` or
``{"queries": [str]}`` and lays out 10 results per query as ``[k] URL`` then ``Title:``,
``Snippet:`` and ``Date:`` lines; ``web_extractor`` takes ``{"url": str}`` and returns the page as
markdown, or a ``404 Not Found`` error result like a failed fetch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simrl.envs.search_index import SearchHit, SearchIndex
from simrl.types import ToolCall, ToolResult

RESULTS_PER_QUERY = 10
MAX_QUERIES = 20
MAX_QUERY_CHARS = 1_000
"""Longest query (characters) the search tools and ``POST /retrieve`` accept."""
MAX_URL_CHARS = 2_048
"""Longest URL ``web_extractor`` accepts."""
SEARCH_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "web_search",
        "description": "Search the web. Returns up to 10 results per query, each with URL, title, snippet "
                       "and date. Give one query, or several at once as `queries`.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "maxLength": MAX_QUERY_CHARS, "description": "The search query."},
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
    if any(len(q) > MAX_QUERY_CHARS for q in items):
        raise ValueError(f"a query may be at most {MAX_QUERY_CHARS} characters; shorten it")
    return [q.strip() for q in items]


def format_results(query: str, hits: list[SearchHit]) -> str:
    """One query's results block: a header line, then ``[k] URL`` / ``Title:`` / ``Snippet:`` / ``Date:``."""
    if not hits:
        return f"No results found for '{query}'. Try a shorter or different query."
    lines = [f"A search for '{query}' found {len(hits)} results:"]
    for n, h in enumerate(hits, 1):
        lines += ["", f"[{n}] {h.url}", f"Title: {h.title}", f"Snippet: {h.snippet}", f"Date: {h.date or 'N/A'}"]
    return "\n".join(lines)


Mix = Callable[[int, str, list[SearchHit]], list[SearchHit]]
"""``mix(query position, query, ranked hits) -> shown hits`` (a real engine's noise, :mod:`simrl.envs.search_noise`)."""


def web_search(index: SearchIndex, args: dict[str, Any], mix: Mix | None = None) -> ToolResult:
    """Run ``web_search``: 10 results per query, one block per query (each query's hits passed through ``mix``).

    Raises:
        ValueError: bad arguments (the message says which and how to fix them).
    """
    queries = _queries(args)
    ranked = index.search_many(queries, RESULTS_PER_QUERY)
    if mix is not None:
        ranked = [mix(i, q, h) for i, (q, h) in enumerate(zip(queries, ranked))]
    blocks = [format_results(q, h) for q, h in zip(queries, ranked)]
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
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"`url` may be at most {MAX_URL_CHARS} characters")
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


def call_tool(index: SearchIndex, call: ToolCall, mix: Mix | None = None) -> ToolResult:
    """Run one tool call (``web_search``'s hits through ``mix``); an unknown tool or bad arguments give an
    ``is_error`` result, never an exception."""
    try:
        if mix is not None and call.name == "web_search":
            result = web_search(index, dict(call.arguments), mix)
        else:
            result = run_tool(index, call.name, dict(call.arguments))
    except KeyError as err:
        result = ToolResult(name=call.name, content=f"Error: {err.args[0]}", is_error=True)
    except ValueError as err:
        result = ToolResult(name=call.name, content=f"Error: {err}", is_error=True)
    return result.model_copy(update={"call_id": call.call_id})
