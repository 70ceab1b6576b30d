"""Content perturbations: the call runs and its result is rewritten (``phase = "after"``).

Each rewrites a result by its layout (:mod:`simrl.perturb.formats`): a JSON page of records, search
results, or plain text. Where content is held back (partial responses, forced pagination) it is
stored in the episode state and the wrapper serves it when the agent asks: a call whose ``cursor``
is the continuation token, or the same call with a ``page`` number.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import Field

from simrl.perturb import formats as fmt
from simrl.perturb.taxonomy import (
    Continuation,
    Perturbation,
    PerturbContext,
    Recovery,
    register,
    replace_content,
)
from simrl.perturb.taxonomy import PerturbationType as T
from simrl.records.page import TOTAL_KEYS
from simrl.types import ToolCall, ToolResult

MIN_TEXT_CHARS = 200
"""Plain text shorter than this is never cut short or paginated."""
_KEEP = "Keep every value realistic and consistent with earlier observations."


def _page(result: ToolResult | None, ctx: PerturbContext) -> tuple[dict[str, Any], str] | None:
    """``(object, list key)`` when ``result`` is a JSON page of a tool that takes a ``cursor``."""
    if result is None or result.is_error:
        return None
    obj = fmt.parse_json(result.content)
    key = fmt.list_key(obj)
    return (obj, key) if key is not None and fmt.has_param(ctx.tool_schema, "cursor") else None


def _keep(n: int, fraction: float) -> int:
    return min(n - 1, max(1, math.ceil(n * fraction)))


def _with(obj: dict[str, Any], key: str, items: list[Any], cursor: str | None) -> str:
    out = dict(obj)
    out[key], out[fmt.cursor_key(obj)] = items, cursor
    return fmt.dumps(out)


class _HeldPage(Continuation):
    """A held-back JSON page, its text made when it is served: :func:`_with` of the same objects (a private parse
    of the result that nothing changes), so the same text as made up front; most pages a forced pagination holds
    back are never asked for (16 pages a paginated result, in a quickstart run, of which few are followed)."""

    def __init__(self, tool: str, obj: dict[str, Any], key: str, items: list[Any], cursor: str | None) -> None:
        self.tool, self._page = tool, (obj, key, items, cursor)

    @property
    def content(self) -> str:  # type: ignore[override]  # the dataclass field, made on demand
        return _with(*self._page)


def _page_items(text: str) -> tuple[list[Any], Any] | None:
    """``(records, next cursor)`` of a JSON page text, else ``None``."""
    obj = fmt.parse_json(text)
    key = fmt.list_key(obj)
    return None if key is None else (obj[key], obj.get(fmt.cursor_key(obj)))


@register
class PartialResponse(Perturbation):
    """Only part of the result, with a way to get the rest; recover by paginating / repeating.

    JSON pages keep the first records and get a continuation ``next_cursor`` (the wrapper answers
    it with the rest, then the original cursor); search results keep the first results of each
    query and say "[N more results not shown: repeat the query to get the full list]"; long text is
    cut with "[output cut short: ...; repeat the call ...]". A repetition of the same call passes.

    >>> from simrl.types import ToolCall, ToolResult
    >>> schema = {"function": {"parameters": {"properties": {"cursor": {"type": "string"}}}}}
    >>> call = ToolCall(name="list_members", arguments={"org_id": "organization:000007"})
    >>> page = '{"records": [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}], "next_cursor": null, "total": 4}'
    >>> out = PartialResponse().apply(call, ToolResult(name="list_members", content=page),
    ...                               PerturbContext(call, tool_schema=schema))
    >>> out.content.split(', "next_cursor"')[0]
    '{"records": [{"id": 1}, {"id": 2}]'
    """

    kind = T.partial_response
    recovery = Recovery.paginate
    keep_fraction: float = Field(default=0.5, gt=0, lt=1,
                                 description="Share of the records, results or characters shown (at least one).")

    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult | None:
        """The partial result (continuation stored in ``ctx.state``), or ``None`` if nothing can be held back."""
        if result is None or result.is_error:
            return None
        page = _page(result, ctx)
        if page is not None:
            obj, key = page
            items = obj[key]
            if len(items) < 2:
                return None
            keep, token = _keep(len(items), self.keep_fraction), ctx.token()
            original = obj.get(fmt.cursor_key(obj))
            ctx.state.continuations[token] = _HeldPage(call.name, obj, key, items[keep:], original)
            return replace_content(result, _with(obj, key, items[:keep], token))
        text = self._cut(result.content)
        if text is None:
            return None
        ctx.state.exempt.add(fmt.call_key(call.name, call.arguments))
        return replace_content(result, text)

    def _cut(self, content: str) -> str | None:
        blocks = fmt.parse_search(content)
        if blocks is not None:
            if all(len(b.items) < 2 for b in blocks):
                return None
            out = []
            for b in blocks:
                n = len(b.items)
                keep = _keep(n, self.keep_fraction) if n >= 2 else n
                more = f"\n\n[{n - keep} more results not shown: repeat the query to get the full list]"
                out.append(fmt.SearchBlock(b.header, b.items[:keep]).render() + (more if keep < n else ""))
            return fmt.SEARCH_SEPARATOR.join(out)
        if fmt.parse_json(content) is not None or len(content) < MIN_TEXT_CHARS:
            return None
        head = fmt.cut(content, int(len(content) * self.keep_fraction))
        return (f"{head}\n[output cut short: {len(content) - len(head)} more characters not shown; "
                "repeat the call to get the full output]")

    def control_instruction(self, ctx: PerturbContext) -> str:
        """Asks for a partial result with a continuation."""
        return (f"Return a partial result for this call: only the first {self.keep_fraction:.0%} of the records "
                "(at least one), with `next_cursor` set to a new continuation cursor; for search results, only "
                "the first results, then the line '[N more results not shown: repeat the query to get the full "
                f"list]'; for long text, the first part, then '[output cut short: ...]'. {_KEEP}")

    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """A page with fewer records than its total and a next cursor, or a "more results" / "cut short" notice.

        From the text alone a partial page looks like the first page of a longer list, which passes too.
        """
        obj = fmt.parse_json(observation_text)
        key = fmt.list_key(obj)
        if key is not None:
            total = obj.get("total", obj.get("totalCount"))
            return bool(obj.get(fmt.cursor_key(obj))) and (not isinstance(total, int) or total > len(obj[key]))
        return "more results not shown" in observation_text or "[output cut short" in observation_text


@register
class ForcedPagination(Perturbation):
    """The result comes in small pages; recover by following every page.

    JSON pages are split into pages of ``page_size`` records linked by continuation cursors (the
    last one carries the original ``next_cursor``); search results of one query into pages of
    ``page_size`` results, and long text into parts of ``page_chars`` characters, each ending with
    ``call <tool> again with the same arguments and "page": N``.

    >>> from simrl.types import ToolCall, ToolResult
    >>> call = ToolCall(name="web_extractor", arguments={"url": "https://a.example/x"})
    >>> out = ForcedPagination(page_chars=300).apply(call, ToolResult(name="web_extractor", content="word " * 120),
    ...                                              PerturbContext(call))
    >>> out.content.splitlines()[-1]
    '[Part 1 of 3: call web_extractor again with the same arguments and "page": 2 for the next part]'
    """

    kind = T.forced_pagination
    recovery = Recovery.paginate
    page_size: int = Field(default=2, ge=1, description="Records (or search results) per forced page.")
    page_chars: int = Field(default=1500, ge=100, description="Characters per part of a long text result.")

    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult | None:
        """The first page (the rest stored in ``ctx.state``), or ``None`` when the result fits one page."""
        if result is None or result.is_error:
            return None
        page = _page(result, ctx)
        if page is not None:
            obj, key = page
            items = obj[key]
            if len(items) <= self.page_size:
                return None
            chunks = [items[i:i + self.page_size] for i in range(0, len(items), self.page_size)]
            token = ctx.token()  # a pure function of the call and the kind: once, not once per page
            tokens = [f"{token}-{i}" for i in range(1, len(chunks))] + [obj.get(fmt.cursor_key(obj))]
            for i in range(1, len(chunks)):
                ctx.state.continuations[tokens[i - 1]] = _HeldPage(call.name, obj, key, chunks[i], tokens[i])
            return replace_content(result, _with(obj, key, chunks[0], tokens[0]))
        parts = self._parts(call.name, result.content)
        if parts is None:
            return None
        for p, text in enumerate(parts[1:], start=2):
            ctx.state.continuations[fmt.page_key(call, p)] = Continuation(call.name, text)
        return replace_content(result, parts[0])

    def _parts(self, tool: str, content: str) -> list[str] | None:
        blocks = fmt.parse_search(content)
        again = f'call {tool} again with the same arguments and "page":'
        if blocks is not None:
            if len(blocks) != 1 or len(blocks[0].items) <= self.page_size:
                return None
            items, n = blocks[0].items, len(blocks[0].items)
            out = []
            for p, a in enumerate(range(0, n, self.page_size), start=1):
                b = min(n, a + self.page_size)
                more = f"\n\n[Showing results {a + 1}-{b} of {n}: {again} {p + 1} for the next results]" if b < n else ""
                out.append(fmt.SearchBlock(blocks[0].header, items[a:b]).render() + more)
            return out
        if fmt.parse_json(content) is not None or len(content) <= max(self.page_chars, MIN_TEXT_CHARS):
            return None
        chunks, rest = [], content
        while rest:
            head = fmt.cut(rest, self.page_chars) if len(rest) > self.page_chars else rest
            chunks.append(head)
            rest = rest[len(head):]
        total = len(chunks)
        return [c + (f"\n[Part {p} of {total}: {again} {p + 1} for the next part]" if p < total else "")
                for p, c in enumerate(chunks, start=1)]

    def control_instruction(self, ctx: PerturbContext) -> str:
        """Asks for small pages."""
        return (f"Paginate this result: return at most {self.page_size} records with `next_cursor` set to a "
                "continuation cursor for the rest; for search results, at most "
                f"{self.page_size} results ending with '[Showing results 1-{self.page_size} of N: call the tool again "
                'with the same arguments and "page": 2 for the next results]\'. ' + _KEEP)

    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """At most ``page_size`` records and a next cursor, or a ``"page": N`` notice."""
        page = _page_items(observation_text)
        if page is not None:
            return bool(page[1]) and len(page[0]) <= self.page_size
        return bool(re.search(r'again with the same arguments and "page": \d+', observation_text))


@register
class EmptyResult(Perturbation):
    """A well-formed empty result for this call only; recover by re-querying (rephrased, or once more).

    >>> from simrl.types import ToolCall, ToolResult
    >>> call = ToolCall(name="find_by_name", arguments={"name": "Acme"})
    >>> page = '{"records": [{"id": "organization:000001", "name": "Acme"}], "total": 1}'
    >>> EmptyResult().apply(call, ToolResult(name="find_by_name", content=page), PerturbContext(call)).content
    '{"records": [], "total": 0}'
    """

    kind = T.empty_result
    recovery = Recovery.requery

    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult | None:
        """The empty page / "No results found" text, or ``None`` for results that are not lists."""
        if result is None or result.is_error:
            return None
        obj = fmt.parse_json(result.content)
        key = fmt.list_key(obj)
        if key is not None:
            if not obj[key]:
                return None
            out = dict(obj)
            out[key] = []
            for k in fmt.CURSOR_KEYS:
                if k in out:
                    out[k] = None
            for k in TOTAL_KEYS:
                if k in out:
                    out[k] = 0
            return replace_content(result, fmt.dumps(out))
        blocks = fmt.parse_search(result.content)
        if blocks is None or not any(b.items for b in blocks):
            return None
        return replace_content(result, fmt.SEARCH_SEPARATOR.join(
            f"No results found for '{b.query}'. Try a shorter or different query." for b in blocks))

    def control_instruction(self, ctx: PerturbContext) -> str:
        """Asks for an empty, well-formed result."""
        return ("Return a well-formed empty result for this call: no records (an empty list, null next_cursor, "
                "total 0), or for a search 'No results found for <query>. Try a shorter or different query.'")

    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """An empty list page, or only "No results found" blocks."""
        page = _page_items(observation_text)
        if page is not None:
            return not page[0]
        blocks = fmt.parse_search(observation_text)
        return blocks is not None and all(not b.items for b in blocks)

