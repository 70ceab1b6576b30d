"""HTTP server for a world's search engine (Starlette, served by uvicorn: ``simrl serve search``).

Endpoints (JSON in and out):

=========================  ===========================================================================
``GET /health``            ``{"status": "ok", "world": str, "documents": int}``
``GET /tools``             ``{"tools": SEARCH_TOOLS}`` (OpenAI function-format schemas)
``POST /tools/web_search``     tool arguments (``{"query": str}`` or ``{"queries": [str]}``) ->
                               ``{"content": str, "is_error": bool}``
``POST /tools/web_extractor``  ``{"url": str}`` -> ``{"content": str, "is_error": bool}`` (an unknown URL is
                               ``is_error`` with ``404 Not Found: ...``, still HTTP 200: the tool ran)
``POST /retrieve``         the Search-R1 retrieval contract (``search_r1/search/retrieval_server.py``):
                           ``{"queries": [str], "topk": int = 3, "return_scores": bool = false}`` ->
                           ``{"result": [[doc, ...] per query]}`` where, as in Search-R1, each item is
                           ``{"document": doc, "score": float}`` when ``return_scores`` is true and the
                           bare ``doc`` otherwise; ``doc = {"id", "url", "contents": "Title\\ntext"}``
=========================  ===========================================================================

Errors: malformed JSON (also: nested deeper than :data:`MAX_JSON_DEPTH`, or strings with lone UTF-16
surrogates) -> 400, a body over :data:`MAX_BODY_BYTES` -> 413, a body of the wrong shape or bad tool
arguments -> 422, an unknown tool -> 404, a ``Host`` header that is not this server's -> 400; each
with ``{"error": message}`` (tool argument errors also carry ``content`` / ``is_error`` so a tool
client can show them to the policy).

Limits (every size a client controls): body :data:`MAX_BODY_BYTES`; ``/retrieve``: at most
:data:`MAX_QUERIES` queries of at most ``MAX_QUERY_CHARS`` characters, ``topk`` at most
:data:`MAX_TOPK`, and ``len(queries) * topk`` at most :data:`MAX_RESULTS`; tools: the tools' own
limits (:mod:`simrl.envs.search_tools`: 20 queries, 1,000 characters each, URLs of 2,048).

DNS-rebinding protection (as the MCP SDK's server does for a loopback bind): when the server listens
on a loopback address, requests whose ``Host`` is not ``127.0.0.1``, ``localhost`` or ``[::1]`` (any
port) are refused with 400, so a web page cannot reach it through a rebound DNS name. Bound to another
interface it accepts any ``Host`` (give ``allowed_hosts`` to restrict it).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from simrl.envs.search import SEARCH_TOOLS, SearchIndex, plain_text, run_tool
from simrl.envs.search_tools import MAX_QUERY_CHARS

MAX_QUERIES = 1024
"""Queries per ``/retrieve`` request (Search-R1 sends a training batch at once)."""
MAX_TOPK = 100
"""Documents per query of ``/retrieve`` (Search-R1's default is 3)."""
MAX_RESULTS = 8192
"""Documents per ``/retrieve`` request in all (``len(queries) * topk``): about 20 MB of JSON at most."""
MAX_BODY_BYTES = 1 << 20
"""Largest request body (1 MiB)."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects in a request body."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class RetrieveRequest(BaseModel):
    """Body of ``POST /retrieve`` (Search-R1's ``QueryRequest``; ``topk`` defaults to its 3)."""

    model_config = ConfigDict(extra="forbid")

    queries: list[Annotated[str, Field(max_length=MAX_QUERY_CHARS)]] = Field(max_length=MAX_QUERIES)
    topk: int | None = Field(default=None, ge=1, le=MAX_TOPK)
    return_scores: bool = False

    @model_validator(mode="after")
    def _bounded(self) -> RetrieveRequest:
        if len(self.queries) * (self.topk or 3) > MAX_RESULTS:
            raise ValueError(f"len(queries) * topk may be at most {MAX_RESULTS}; send fewer queries per request")
        return self


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class BodyTooLarge(ValueError):
    """A request body over :data:`MAX_BODY_BYTES` (answered 413)."""


_OPENERS = re.compile(rb"[\[{]")


async def _json_body(request: Request) -> Any:
    """The request body parsed as JSON.

    Raises:
        BodyTooLarge: over :data:`MAX_BODY_BYTES`.
        ValueError: malformed JSON, nesting deeper than :data:`MAX_JSON_DEPTH`, lone surrogates.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"request body over {MAX_BODY_BYTES} bytes; send less per request")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise BodyTooLarge(f"request body over {MAX_BODY_BYTES} bytes; send less per request")
    if len(_OPENERS.findall(raw)) > MAX_JSON_DEPTH and _depth(raw) > MAX_JSON_DEPTH:
        raise ValueError(f"request body nests arrays/objects deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(raw or b"null")
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # lone surrogates (\ud800) cannot be text
    except (json.JSONDecodeError, UnicodeError) as err:
        raise ValueError(f"request body is not valid JSON text: {err}") from None
    return data


def _depth(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text (brackets inside strings are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            escaped, in_string = (False, True) if escaped else (byte == 92, byte != 34)
        elif byte == 34:
            in_string = True
        elif byte in (91, 123):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (93, 125):
            depth -= 1
    return deepest


def retrieve(index: SearchIndex, req: RetrieveRequest) -> dict[str, list]:
    """Answer a Search-R1 ``/retrieve`` request: ``{"result": [[item, ...] per query]}``."""
    result = []
    for query in req.queries:
        items = []
        for i, score in index.rank(query, req.topk or 3):
            doc = index.raw(i)
            contents = doc["title"] + "\n" + plain_text(doc["text"])
            document = {"id": doc["doc_id"], "url": doc["url"], "contents": contents}
            items.append({"document": document, "score": score} if req.return_scores else document)
        result.append(items)
    return {"result": result}


def _body_error(err: ValueError) -> JSONResponse:
    return _error(413 if isinstance(err, BodyTooLarge) else 400, str(err))


def make_app(index: SearchIndex, host: str = "127.0.0.1", allowed_hosts: list[str] | None = None) -> Starlette:
    """The Starlette app serving ``index`` (see the module docstring for endpoints, errors and limits).

    Args:
        index: the world's search index.
        host: the address the server listens on (a loopback one turns on the ``Host`` check).
        allowed_hosts: the ``Host`` names accepted (default: loopback names for a loopback ``host``,
            any otherwise).
    """

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "world": str(index.world), "documents": len(index)})

    async def tools(request: Request) -> JSONResponse:
        return JSONResponse({"tools": SEARCH_TOOLS})

    async def tool(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        try:
            args = await _json_body(request)
        except ValueError as err:
            return _body_error(err)
        if not isinstance(args, dict):
            return _error(422, "the body must be a JSON object of tool arguments")
        try:
            result = await run_in_threadpool(run_tool, index, name, args)
        except KeyError as err:
            return _error(404, err.args[0])
        except ValueError as err:
            return _error(422, str(err), content=f"Error: {err}", is_error=True)
        return JSONResponse({"content": result.content, "is_error": result.is_error})

    async def retrieve_endpoint(request: Request) -> JSONResponse:
        try:
            req = RetrieveRequest.model_validate(await _json_body(request))
        except ValueError as err:  # malformed JSON
            if isinstance(err, ValidationError):
                details = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors()[:5]]
                return _error(422, "invalid /retrieve request: " + "; ".join(details))
            return _body_error(err)
        return JSONResponse(await run_in_threadpool(retrieve, index, req))

    if allowed_hosts is None and host in LOOPBACK_HOSTS:
        allowed_hosts = list(LOOPBACK_HOSTS)
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/tools", tools, methods=["GET"]),
        Route("/tools/{name}", tool, methods=["POST"]),
        Route("/retrieve", retrieve_endpoint, methods=["POST"]),
    ], middleware=middleware)
