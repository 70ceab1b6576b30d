"""Error perturbations: the call fails instead of running (``phase = "before"``).

The error replaces the call: nothing is executed, so an error on a write tool means the write did
not happen, and retrying it is safe. Messages follow the record server's operational faults
(``simrl/records/server.py``): an HTTP status, a reason, and what to do.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from simrl.perturb.formats import dumps, parse_json, parse_search, properties
from simrl.perturb.formats import param_type as _type
from simrl.perturb.taxonomy import Perturbation, PerturbContext, Recovery, error_result, register
from simrl.perturb.taxonomy import PerturbationType as T
from simrl.types import ToolCall, ToolResult

_NO_CONTENT = "Reply with this error only: no result data."


def _no_data(text: str) -> bool:
    """True when ``text`` carries no result data (no JSON list page, no search results)."""
    obj = parse_json(text)
    return not (isinstance(obj, dict | list) and obj) and parse_search(text) is None


@register
class ServerError(Perturbation):
    """A transient server error (500 / 502 / 503); recover by retrying the same call.

    >>> from simrl.types import ToolCall
    >>> call = ToolCall(name="list_members", arguments={"org_id": "organization:000007"})
    >>> ServerError(codes=[503]).apply(call, None, PerturbContext(call)).content[:27]
    '503 Service Unavailable: th'
    """

    kind = T.server_error
    recovery = Recovery.retry
    phase = "before"
    codes: list[Literal[500, 502, 503]] = Field(
        default=[500, 503], min_length=1, description="HTTP statuses to draw from (500, 502, 503).")

    def _code(self, ctx: PerturbContext) -> int:
        return self.codes[ctx.rng().randrange(len(self.codes))]

    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult:
        """An ``is_error`` result with the drawn status; the call is not executed."""
        reason = {500: "Internal Server Error: the service failed while handling the request",
                  502: "Bad Gateway: the upstream service returned an invalid response",
                  503: "Service Unavailable: the service is temporarily unavailable"}[self._code(ctx)]
        return error_result(call, f"{self._code(ctx)} {reason}; the request was not applied, retry it")

    def control_instruction(self, ctx: PerturbContext) -> str:
        """Asks for an HTTP ``{code}`` error."""
        return (f"This call fails with a transient server error: reply with an 'HTTP {self._code(ctx)}' error "
                f"saying the request was not applied and can be retried. {_NO_CONTENT}")

    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """A 500/502/503 status and no result data."""
        return bool(re.search(r"\b50[023]\b", observation_text)) and _no_data(observation_text)


@register
class RateLimit(Perturbation):
    """``429 Too Many Requests`` with a retry-after in seconds; recover by waiting, then retrying.

    >>> from simrl.types import ToolCall
    >>> call = ToolCall(name="web_search", arguments={"query": "Acme"})
    >>> RateLimit(retry_after=(2, 2)).apply(call, None, PerturbContext(call)).content
    '429 Too Many Requests: rate limit exceeded; retry after 2 s (Retry-After: 2)'
    """

    kind = T.rate_limit
    recovery = Recovery.retry
    phase = "before"
    retry_after: tuple[int, int] = Field(
        default=(1, 5), description="Smallest and largest retry-after, in seconds (one is drawn per error).")

    @model_validator(mode="after")
    def _ordered(self) -> RateLimit:
        low, high = self.retry_after
        if not 0 <= low <= high:
            raise ValueError(f"retry_after must be [min, max] with 0 <= min <= max, got {list(self.retry_after)}")
        return self

    def _wait(self, ctx: PerturbContext) -> int:
        return ctx.rng().randint(*self.retry_after)

    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult:
        """An ``is_error`` 429 result naming the retry-after; the call is not executed."""
        wait = self._wait(ctx)
        return error_result(call, f"429 Too Many Requests: rate limit exceeded; retry after {wait} s "
                                  f"(Retry-After: {wait})")

    def control_instruction(self, ctx: PerturbContext) -> str:
        """Asks for a 429 with a retry-after."""
        return (f"This call is rate limited: reply with an 'HTTP 429 Too Many Requests' error that says to retry "
                f"after {self._wait(ctx)} seconds (Retry-After). {_NO_CONTENT}")

    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """A 429 status, a retry-after number, and no result data."""
        return ("429" in observation_text and _no_data(observation_text)
                and bool(re.search(r"retry[- ]after\D{0,8}\d", observation_text, re.IGNORECASE)))


@register
class Timeout(Perturbation):
    """The call times out (``504 Gateway Timeout``, "timed out"); recover by retrying it.

    No time is spent: the error reports ``after_s`` seconds but returns at once.

    >>> from simrl.types import ToolCall
    >>> call = ToolCall(name="update_record", arguments={"id": "organization:000001", "fields": {}})
    >>> Timeout(after_s=30).apply(call, None, PerturbContext(call)).content[:44]
    '504 Gateway Timeout: the call timed out afte'
    """

    kind = T.timeout
    recovery = Recovery.retry
    phase = "before"
    after_s: float = Field(default=30.0, gt=0, description="Seconds the error says the call waited (none are spent).")

    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult:
        """An ``is_error`` 504 result; the call is not executed."""
        return error_result(call, f"504 Gateway Timeout: the call timed out after {self.after_s:g}s; "
                                  "the request was not applied, retry it")

    def control_instruction(self, ctx: PerturbContext) -> str:
        """Asks for a timeout error."""
        return (f"This call times out: reply with an 'HTTP 504 Gateway Timeout' error saying the call timed out "
                f"after {self.after_s:g} seconds and was not applied. {_NO_CONTENT}")

    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """A 504 status or "timed out", and no result data."""
        low = observation_text.lower()
        return ("504" in low or "timed out" in low or "timeout" in low) and _no_data(observation_text)


def missing_argument(call: ToolCall, schema: dict[str, Any] | None) -> tuple[str, Any, str | None] | None:
    """An optional argument of the tool that ``call`` left out and that can be spelled explicitly.

    Returns ``(name, example value, replaced argument or None)``: an integer argument (its default,
    else 10), a boolean (its default, else False), a string with an ``enum`` (its first value), or a
    list form of a given string argument (``queries`` for ``query``: replaced). ``cursor`` and
    ``page`` are never asked for. ``None`` when there is none.
    """
    props, required = properties(schema)
    for name, prop in props.items():
        if name in call.arguments or name in required or name in ("cursor", "page"):
            continue
        kind, default = _type(prop), prop.get("default")
        if kind == "integer":
            return name, default if isinstance(default, int) else 10, None
        if kind == "boolean":
            return name, default if isinstance(default, bool) else False, None
        if kind == "string" and prop.get("enum"):
            return name, prop["enum"][0], None
        single = name[:-3] + "y" if name.endswith("ies") else name[:-1]
        if kind == "array" and name.endswith("s") and isinstance(call.arguments.get(single), str):
            return name, [call.arguments[single]], single
    return None


@register
class ValidationError(Perturbation):
    """A ``422 Unprocessable Entity`` for a valid call, naming an argument to give explicitly.

    Recover by retrying with that argument (the message gives its type and an example). Fits only
    tools with such an optional argument (:func:`missing_argument`).

    >>> from simrl.types import ToolCall
    >>> schema = {"function": {"parameters": {"properties": {"org_id": {"type": "string"},
    ...           "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}, "required": ["org_id"]}}}
    >>> call = ToolCall(name="list_members", arguments={"org_id": "organization:000007"})
    >>> ValidationError().apply(call, None, PerturbContext(call, tool_schema=schema)).content
    '422 Unprocessable Entity: argument "limit" is required for this call: give it explicitly (integer, e.g. 10)'
    """

    kind = T.validation_error
    recovery = Recovery.fix_arguments
    phase = "before"

    def fits(self, call: ToolCall, ctx: PerturbContext) -> bool:
        """The tool has an optional argument the call left out."""
        return missing_argument(call, ctx.tool_schema) is not None

    def _message(self, call: ToolCall, ctx: PerturbContext) -> str | None:
        found = missing_argument(call, ctx.tool_schema)
        if found is None:
            return None
        name, example, replaces = found
        kind = _type(properties(ctx.tool_schema)[0][name])
        instead = f' instead of "{replaces}"' if replaces else ""
        return (f'422 Unprocessable Entity: argument "{name}" is required for this call: give it explicitly{instead} '
                f"({kind}, e.g. {dumps(example)})")

    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult | None:
        """An ``is_error`` 422 result naming the argument; ``None`` if the tool has none to ask for."""
        text = self._message(call, ctx)
        return None if text is None else error_result(call, text)

    def control_instruction(self, ctx: PerturbContext) -> str:
        """Asks for the 422 text (the argument is chosen here, from the tool's schema)."""
        return (f"Reject this call with a validation error, exactly: {self._message(ctx.call, ctx)!r}. "
                f"{_NO_CONTENT}")

    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """A 422 status naming the argument."""
        found = missing_argument(ctx.call, ctx.tool_schema)
        return "422" in observation_text and found is not None and f'"{found[0]}"' in observation_text


@register
class Outage(Perturbation):
    """The tool goes down for the rest of the episode (503 on every later call). Not recoverable.

    Used only by schedules that set ``allow_unrecoverable: true``: the agent can only answer with
    what it already has (or say it could not finish).

    >>> from simrl.types import ToolCall
    >>> call = ToolCall(name="web_search", arguments={"query": "Acme"})
    >>> Outage().apply(call, None, PerturbContext(call)).content[:45]
    '503 Service Unavailable: web_search is down f'
    """

    kind = T.outage
    recovery = Recovery.none
    recoverable = False
    phase = "before"
    sticky = True

    def apply(self, call: ToolCall, result: ToolResult | None, ctx: PerturbContext) -> ToolResult:
        """An ``is_error`` 503 result saying the tool is down for the rest of the session."""
        return error_result(call, f"503 Service Unavailable: {call.name} is down for the rest of this session "
                                  "(outage); retrying will not help")

    def control_instruction(self, ctx: PerturbContext) -> str:
        """Asks for a lasting outage of the tool."""
        return (f"The tool {ctx.call.name} is down for the rest of this session: reply with an 'HTTP 503' error "
                f"saying so, now and on every later call of {ctx.call.name}. {_NO_CONTENT}")

    def complies(self, observation_text: str, ctx: PerturbContext) -> bool:
        """A 503 status and no result data."""
        return "503" in observation_text and _no_data(observation_text)
