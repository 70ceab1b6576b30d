"""Reshaping perturbations: the call runs and its result changes form, not content (``phase = "after"``).

Schema drift renames fields and adds extra ones (an API that moved on a version); an oversized
response is cut at a size limit with a notice telling the agent to ask for less.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator

from simrl.perturb import formats as fmt
from simrl.perturb.taxonomy import Perturbation, PerturbContext, Recovery, register, replace_content
from simrl.perturb.taxonomy import PerturbationType as T
from simrl.records.page import DRIFTED, RECORDS
from simrl.types import ToolCall, ToolResult

PAGE_RENAMES = DRIFTED
"""The page fields a schema drift renames (:data:`simrl.records.page.DRIFTED`)."""
"""How schema drift renames a JSON page's fields."""
SEARCH_RENAMES = {"Title:": "Page title:", "Snippet:": "Summary:", "Date:": "Published:"}
"""How schema drift relabels search results."""
PAGE_TEXT_RENAMES = {"Title:": "Page title:", "URL Source:": "Source URL:", "Published Time:": "Published:",
                     "Markdown Content:": "Content:"}
"""How schema drift relabels a fetched page (``web_extractor``)."""
TRUNCATED = "[response truncated at"


def _relabel(text: str, labels: dict[str, str]) -> str:
    for old, new in labels.items():
        text = re.sub(rf"^{re.escape(old)}", new, text, flags=re.MULTILINE)
    return text


@register
class SchemaDrift(Perturbation):
    """Renamed and extra fields in the result; recover by parsing tolerantly (no extra call needed).

    JSON pages rename ``records`` -> ``items``, ``next_cursor`` -> ``nextCursor``, ``total`` ->
    ``totalCount``; JSON objects get an extra ``_meta`` field; search results and fetched pages get
    relabelled lines (``Title:`` -> ``Page title:``, ...) and an extra ``Language:`` line.

    >>> from simrl.types import ToolCall, ToolResult
    >>> call = ToolCall(name="list_members", arguments={"org_id": "organization:000007"})
    >>> page = '{"records": [], "next_cursor": null, "total": 0}'
    >>> SchemaDrift(extra_fields=False).apply(call, ToolResult(name="list_members", content=page),
    ...                                       PerturbContext(call)).content
    '{"items": [], "nextCursor": null, "totalCount": 0}'
    """

    kind = T.schema_drift
    recovery = Recovery.adapt
    rename: bool = Field(default=True, description="Rename fields (records -> items, next_cursor -> nextCursor, ...).")
    extra_fields: bool = Field(default=True, description="Add fields the agent has not seen (_meta, Language:).")

    @model_validator(mode="after")
    def _something(self) -> SchemaDrift:
        if not (self.rename or self.extra_fields):
            raise ValueError("rename and extra_fields are both false: schema drift would change nothing")
        return self

    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult | None:
        """The drifted result, or ``None`` when the layout is not one it knows (plain text, JSON lists)."""
        if result is None or result.is_error:
            return None
        obj = fmt.parse_json(result.content)
        if isinstance(obj, dict):
            out = self._drift_json(obj, ctx)
            return None if out == obj else replace_content(result, fmt.dumps(out))
        text = result.content
        if fmt.parse_search(text) is not None:
            labels, anchor = SEARCH_RENAMES, r"^(Date: .*)$"
        elif text.startswith("Title: ") and "\nURL Source: " in text:
            labels, anchor = PAGE_TEXT_RENAMES, r"^(URL Source: .*)$"
        else:
            return None
        if self.extra_fields:
            text = re.sub(anchor, r"\1\nLanguage: en", text, flags=re.MULTILINE)
        return replace_content(result, _relabel(text, labels) if self.rename else text)

    def _drift_json(self, obj: dict[str, Any], ctx: PerturbContext) -> dict[str, Any]:
        out = obj
        if self.rename and fmt.list_key(obj) == RECORDS:
            out = {PAGE_RENAMES.get(k, k): v for k, v in obj.items()}
        if self.extra_fields:
            out = {**out, "_meta": {"schema_version": "2", "request_id": ctx.token()[-12:]}}
        return out

    def control_instruction(self, ctx: PerturbContext) -> str:
        """Asks for the renamed / extra fields."""
        asks = []
        if self.rename:
            asks.append("rename the fields records -> items, next_cursor -> nextCursor, total -> totalCount (for "
                        "text results: 'Title:' -> 'Page title:', 'Snippet:' -> 'Summary:')")
        if self.extra_fields:
            asks.append("add an extra field `_meta` ({\"schema_version\": \"2\"}) (for text results: a 'Language: en' "
                        "line per item)")
        return "The tool's response format has drifted: " + "; ".join(asks) + ". Keep the values unchanged."

    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """A renamed field or an extra ``_meta`` / relabelled line, as asked."""
        obj = fmt.parse_json(observation_text)
        if isinstance(obj, dict):
            renamed = RECORDS not in obj and any(k in obj for k in DRIFTED.values())
            return (self.rename and renamed) or (self.extra_fields and "_meta" in obj)
        relabelled = bool(re.search(r"^(Page title|Summary|Source URL):", observation_text, re.MULTILINE))
        return (self.rename and relabelled) or (self.extra_fields and "\nLanguage: " in observation_text)


@register
class OversizedResponse(Perturbation):
    """The result is over a size limit and cut there, with a notice; recover by asking for less.

    Fits tools that can narrow a request: an integer ``limit``-like argument (ask for fewer
    records) or a query (a more specific one). The notice reads ``[response truncated at M of N
    characters: ...]``.

    >>> from simrl.types import ToolCall, ToolResult
    >>> schema = {"function": {"parameters": {"properties": {"limit": {"type": "integer"}}}}}
    >>> call = ToolCall(name="search_records", arguments={"type": "person"})
    >>> out = OversizedResponse(max_chars=100).apply(call, ToolResult(name="search_records", content="x " * 100),
    ...                                              PerturbContext(call, tool_schema=schema))
    >>> out.content.splitlines()[-1][:40]
    '[response truncated at 100 of 200 charac'
    """

    kind = T.oversized_response
    recovery = Recovery.narrow
    max_chars: int = Field(default=2000, ge=50, description="Size limit in characters; longer results are cut.")

    def fits(self, call: ToolCall, ctx: PerturbContext) -> bool:
        """The tool takes a limit-like integer argument or a query."""
        return fmt.narrowable(ctx.tool_schema)

    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult | None:
        """The cut result with its notice, or ``None`` when the result is within the limit."""
        if result is None or result.is_error or len(result.content) <= self.max_chars:
            return None
        head = result.content[:self.max_chars]
        return replace_content(result, f"{head}\n{TRUNCATED} {self.max_chars} of {len(result.content)} characters: "
                                       'the response is too large; narrow the request (a smaller "limit" or a more '
                                       "specific query)]")

    def control_instruction(self, ctx: PerturbContext) -> str:
        """Asks for the cut and the notice."""
        return (f"The response is too large: write the full result but stop after {self.max_chars} characters, "
                f"then add the line '{TRUNCATED} {self.max_chars} of <full length> characters: the response is "
                "too large; narrow the request (a smaller \"limit\" or a more specific query)]'.")

    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """The notice is there and what precedes it is within the limit (plus a little slack)."""
        i = observation_text.find(TRUNCATED)
        return i >= 0 and i <= self.max_chars + 50
