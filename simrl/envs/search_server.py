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

Errors: malformed JSON -> 400, a body of the wrong shape or bad tool arguments -> 422, an unknown
tool -> 404; each with ``{"error": message}`` (tool argument errors also carry ``content`` /
``is_error`` so a tool client can show them to the policy).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from simrl.envs.search import SEARCH_TOOLS, SearchIndex, plain_text, run_tool

MAX_QUERIES = 1024
MAX_TOPK = 1000


class RetrieveRequest(BaseModel):
    """Body of ``POST /retrieve`` (Search-R1's ``QueryRequest``; ``topk`` defaults to its 3)."""

    model_config = ConfigDict(extra="forbid")

    queries: list[str] = Field(max_length=MAX_QUERIES)
    topk: int | None = Field(default=None, ge=1, le=MAX_TOPK)
    return_scores: bool = False


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _json_body(request: Request) -> Any:
    """The request body parsed as JSON; raises ValueError with a message on malformed JSON."""
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"request body is not valid JSON: {err}") from None


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


def make_app(index: SearchIndex) -> Starlette:
    """The Starlette app serving ``index`` (see the module docstring for endpoints and errors)."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "world": str(index.world), "documents": len(index)})

    async def tools(request: Request) -> JSONResponse:
        return JSONResponse({"tools": SEARCH_TOOLS})

    async def tool(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        try:
            args = await _json_body(request)
        except ValueError as err:
            return _error(400, str(err))
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
                details = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors()]
                return _error(422, "invalid /retrieve request: " + "; ".join(details))
            return _error(400, str(err))
        return JSONResponse(await run_in_threadpool(retrieve, index, req))

    return Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/tools", tools, methods=["GET"]),
        Route("/tools/{name}", tool, methods=["POST"]),
        Route("/retrieve", retrieve_endpoint, methods=["POST"]),
    ])
