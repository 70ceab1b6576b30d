"""Search over a world's corpus: the bm25s index, the web_search / web_extractor tools, SearchEnv
episodes, the HTTP server (real uvicorn on a free port) and `simrl serve search` errors."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.envs.base import make, registered
from simrl.envs.search import SEARCH_TOOLS, SearchEnv, SearchIndex, call_tool, web_extractor, web_search
from simrl.envs.search_server import make_app
from simrl.errors import SimrlError
from simrl.types import Action, ToolCall
from simrl.world import generate_world, iter_documents, load_instructions, load_spec, load_tasks
from tests.conftest import TINY


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A tiny world of our own (seed 3), so the index cache written into it touches no other test."""
    out = tmp_path_factory.mktemp("search") / "tiny-3"
    generate_world(load_spec(TINY), 3, out)
    return out


@pytest.fixture(scope="session")
def index(world):
    ix = SearchIndex.open(world)
    yield ix
    ix.close()


def _task(world, template):
    return next(t for t in load_tasks(world, type="qa") if t.template == template)


def _call(name, **arguments):
    return Action(tool_calls=[ToolCall(name=name, arguments=arguments)])


def test_exact_title_ranks_its_page_first(world, index):
    docs = [d for d in iter_documents(world) if d.kind == "entity"]
    for doc in docs:
        top = index.search(doc.title, k=3)
        assert top[0].url == doc.url, (doc.title, [h.title for h in top])
    hit = index.search(docs[0].title)[0]
    assert hit.title == docs[0].title and hit.score > 0 and hit.date is None
    assert "](" not in hit.snippet and len(hit.snippet) <= 210  # links stripped, ~200 chars


def test_ranking_is_deterministic_and_cached(world, index, tmp_path):
    queries = [t.prompt for t in load_tasks(world)][:20] + ["Iszomar", "chief executive"]
    messages = []
    built = SearchIndex.open(world, cache_dir=tmp_path, progress=messages.append)
    loaded = SearchIndex.open(world, cache_dir=tmp_path, progress=messages.append)
    assert messages[0].startswith("building") and messages[-1].startswith("loading")
    for q in queries:
        assert index.search(q) == built.search(q) == loaded.search(q)
    assert index.search_many(queries, 5) == [index.search(q, 5) for q in queries]
    assert index.search("zzzqqq unknownword") == [] and index.search("the of and") == []
    built.close(), loaded.close()


def test_page_lookup(world, index):
    doc = next(iter_documents(world))
    assert index.page(doc.url) == doc
    assert index.page(doc.url + "#infobox") == doc
    assert index.page("https://www.tiny.example/wiki/No_such_page") is None


def test_web_search_layout(world, index):
    text = web_search(index, {"query": "chief executive"}).content
    numbered = re.findall(r"^\[(\d+)\] (https://\S+)$", text, re.MULTILINE)
    assert [n for n, _ in numbered] == [str(i) for i in range(1, 11)]  # 10 results max, numbered
    blocks = text.split("\n\n")[1:]
    for block in blocks:
        lines = block.splitlines()
        assert re.fullmatch(r"\[\d+\] https://\S+", lines[0])
        assert lines[1].startswith("Title: ") and lines[2].startswith("Snippet: ")
        assert re.fullmatch(r"Date: (\d{4}-\d\d-\d\d|N/A)", lines[3])
    titles = [d.title for d in iter_documents(world)]
    news = next(d for d in iter_documents(world) if d.kind == "news" and titles.count(d.title) == 1)
    first = web_search(index, {"query": news.title}).content.split("\n\n")[1]
    assert first.splitlines() == [f"[1] {news.url}", f"Title: {news.title}", first.splitlines()[2],
                                  f"Date: {news.date}"]


def test_web_search_several_queries_and_errors(index):
    result = web_search(index, {"queries": ["Iszomar", "zzzqqq"]})
    assert not result.is_error
    first, second = result.content.split("\n\n=======\n\n")
    assert first.startswith("A search for 'Iszomar' found") and "[1] https://" in first
    assert second.startswith("No results found for 'zzzqqq'")
    for bad in ({}, {"query": ""}, {"queries": []}, {"queries": "x"}, {"query": 3}, {"q": "x"},
                {"query": "a", "queries": ["b"]}, {"queries": ["q"] * 21}):
        result = call_tool(index, ToolCall(name="web_search", arguments=bad, call_id="c1"))
        assert result.is_error and result.content.startswith("Error: ") and result.call_id == "c1", bad
    unknown = call_tool(index, ToolCall(name="browse", arguments={}))
    assert unknown.is_error and "web_search" in unknown.content


def test_web_extractor(world, index):
    doc = next(d for d in iter_documents(world) if d.kind == "news")
    page = web_extractor(index, {"url": doc.url})
    assert not page.is_error and doc.text in page.content and f"Published Time: {doc.date}" in page.content
    missing = web_extractor(index, {"url": "https://www.tiny.example/wiki/Nowhere"})
    assert missing.is_error and missing.content.startswith("404 Not Found: https://www.tiny.example/wiki/Nowhere")
    bad = call_tool(index, ToolCall(name="web_extractor", arguments={"link": doc.url}))
    assert bad.is_error and "`url`" in bad.content


def test_tool_schemas():
    assert [t["function"]["name"] for t in SEARCH_TOOLS] == ["web_search", "web_extractor"]
    for tool in SEARCH_TOOLS:
        assert tool["type"] == "function" and tool["function"]["parameters"]["type"] == "object"
        assert tool["function"]["description"]
    assert "search" in registered()


def test_episode_finds_answer_by_search(world, index):
    task = _task(world, "birth_city")
    facts = load_instructions(world)[task.task_id].facts

    async def main():
        env = make("search", world=world, index=index)
        obs = await env.reset(task, seed=0)
        shown = obs.text + json.dumps(obs.tools)
        assert obs.text == task.prompt and obs.tools == SEARCH_TOOLS
        assert task.gold.answer not in shown and not any(f in shown for f in facts)
        found = await env.step(_call("web_search", query=task.prompt))
        assert not found.terminated and found.reward == 0 and not found.observation.results[0].is_error
        url = re.search(r"^\[1\] (\S+)$", found.observation.text, re.MULTILINE).group(1)
        page = await env.step(_call("web_extractor", url=url))
        city = re.search(r"^\| Born \| [^|]*\[([^\]]+)\]", page.observation.text, re.MULTILINE).group(1)
        final = await env.step(Action.final(f"<answer>{city}</answer>"))
        assert final.terminated and final.reward == 1.0 and final.info["success"] is True
        assert final.info["metrics"]["em"] == 1.0
        after = await env.step(_call("web_search", query="x"))
        assert after.truncated and after.info["episode_over"] and after.observation.text.startswith("Error")
        await env.close()
        await env.close()

    asyncio.run(main())


def test_episode_wrong_answer_bad_calls_and_turn_limit(world, index):
    task = _task(world, "birth_city")

    async def main():
        env = make("search", world=world, max_turns=3, index=index)  # the turn limit is make()'s TimeLimit
        await env.reset(task)
        bad = await env.step(Action(tool_calls=[ToolCall(name="web_search", arguments={"q": 1}),
                                                ToolCall(name="nope", arguments={})]))
        assert [r.is_error for r in bad.observation.results] == [True, True] and not bad.truncated
        wrong = await env.step(Action.final("<answer>Atlantis</answer>"))
        assert wrong.terminated and wrong.reward == 0.0 and wrong.info["success"] is False
        await env.reset(task)  # a new episode on the same env
        for turn in range(1, 4):
            step = await env.step(_call("web_search", query="Iszomar"))
            assert step.truncated == (turn == 3)
        assert step.info["truncated_reason"] == "max_turns"
        await env.close()
        with pytest.raises(SimrlError, match="closed"):
            await env.reset(task)

    asyncio.run(main())


def test_records_task_and_bad_world_are_refused(world, index, tmp_path):
    records = load_tasks(world, type="records")[0]
    env = SearchEnv(world, index=index)
    with pytest.raises(SimrlError, match="mcp-world"):
        asyncio.run(env.reset(records))
    with pytest.raises(SimrlError, match="not a world folder"):
        SearchEnv(tmp_path / "missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(index):
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(make_app(index), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    yield url
    srv.should_exit = True
    thread.join(10)


def test_http_retrieve_search_r1_contract(server, index):
    body = {"queries": ["Iszomar", "chief executive"], "topk": 3, "return_scores": True}
    r = httpx.post(f"{server}/retrieve", json=body)
    assert r.status_code == 200
    result = r.json()["result"]
    assert len(result) == 2 and all(len(per_query) == 3 for per_query in result)
    item = result[0][0]
    assert set(item) == {"document", "score"} and isinstance(item["score"], float)
    assert item["document"]["contents"].split("\n", 1)[0] == index.search("Iszomar")[0].title
    bare = httpx.post(f"{server}/retrieve", json={"queries": ["Iszomar"], "topk": 2}).json()["result"]
    assert [d["url"] for d in bare[0]] == [i["document"]["url"] for i in result[0][:2]]
    assert "score" not in bare[0][0] and "contents" in bare[0][0]  # Search-R1: bare documents


def test_http_tools_and_errors(server):
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    assert httpx.get(f"{server}/tools").json()["tools"] == SEARCH_TOOLS
    r = httpx.post(f"{server}/tools/web_search", json={"query": "Iszomar"})
    assert r.status_code == 200 and not r.json()["is_error"] and "[1] https://" in r.json()["content"]
    r = httpx.post(f"{server}/tools/web_extractor", json={"url": "https://nowhere.example/"})
    assert r.status_code == 200 and r.json()["is_error"] and r.json()["content"].startswith("404 Not Found")
    bad = [("/retrieve", b"{not json", 400), ("/retrieve", b'{"topk": 3}', 422),
           ("/retrieve", b'{"queries": "x"}', 422), ("/retrieve", b'{"queries": ["x"], "topk": 0}', 422),
           ("/tools/web_search", b"[1, 2]", 422), ("/tools/web_search", b'{"q": "x"}', 422),
           ("/tools/web_search", b"{oops", 400), ("/tools/fly", b"{}", 404)]
    for path, content, status in bad:
        r = httpx.post(f"{server}{path}", content=content, headers={"content-type": "application/json"})
        assert r.status_code == status, (path, content, r.text)
        assert r.json()["error"]


def test_cli_serve_search_bad_world(tmp_path):
    result = CliRunner().invoke(app, ["serve", "search", "--world", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "not a world folder" in result.output + getattr(result, "stderr", "")


def test_rank_equals_exhaustive_bm25s_ranking(world, tmp_path):
    """The pruned top-k equals bm25s's own dense scores sorted by (-score, corpus order)."""
    import bm25s
    import numpy as np

    from simrl.envs.search import CACHE_FORMAT, tokenize

    index = SearchIndex.open(world, cache_dir=tmp_path)
    oracle = bm25s.BM25.load(str(next(tmp_path.glob(f"{CACHE_FORMAT}-*"))), show_progress=False)
    titles = [d.title for d in iter_documents(world)]
    queries = [t.prompt for t in load_tasks(world)] + [f"{t} born founded chief" for t in titles[::5]]
    for q in queries:
        words = [w for w in tokenize(q) if w in oracle.vocab_dict]
        scores = oracle.get_scores(words)
        exhaustive = [int(i) for i in np.lexsort((np.arange(len(scores)), -scores)) if scores[i] > 0]
        for k in (1, 3, 10, 50):
            got = index.rank(q, k)
            assert [i for i, _ in got] == exhaustive[:k], (q, k)
            assert np.allclose([s for _, s in got], scores[exhaustive[:k]])
    index.close()


def test_http_limits_and_hostile_bodies_get_a_4xx_with_a_reason(server):
    from simrl.envs.search_server import MAX_BODY_BYTES, MAX_RESULTS, MAX_TOPK

    deep = b"[" * 100_000 + b"]" * 100_000
    surrogate = b'{"queries": ["\\ud800 lone"], "topk": 1}'
    cases = [("/retrieve", deep, 400), ("/tools/web_search", deep, 400), ("/retrieve", surrogate, 400),
             ("/tools/web_search", b'{"query": "\\udfff"}', 400),
             ("/retrieve", json.dumps({"queries": ["x"] * 1024, "topk": MAX_TOPK}).encode(), 422),
             ("/retrieve", json.dumps({"queries": ["x"], "topk": MAX_TOPK + 1}).encode(), 422),
             ("/retrieve", json.dumps({"queries": ["x" * 1001]}).encode(), 422),
             ("/tools/web_search", json.dumps({"query": "x" * 1001}).encode(), 422),
             ("/tools/web_extractor", json.dumps({"url": "u" * 3000}).encode(), 422),
             ("/retrieve", b" " * (MAX_BODY_BYTES + 1), 413)]
    for path, content, status in cases:
        r = httpx.post(f"{server}{path}", content=content, headers={"content-type": "application/json"})
        assert r.status_code == status and r.json()["error"], (path, content[:40], r.status_code, r.text[:200])
    assert "topk" in httpx.post(f"{server}/retrieve", json={"queries": ["x"] * 1024, "topk": 9}).json()["error"]
    assert MAX_RESULTS < 1024 * MAX_TOPK


def test_http_dns_rebinding_protection(server, index):
    r = httpx.get(f"{server}/health", headers={"Host": "evil.example:8000"})
    assert r.status_code == 400
    assert httpx.get(f"{server}/health", headers={"Host": "localhost:1234"}).status_code == 200
    from starlette.testclient import TestClient

    open_app = TestClient(make_app(index, host="0.0.0.0"), base_url="http://evil.example")
    assert open_app.get("/health").status_code == 200  # bound to all interfaces: no Host check by default
