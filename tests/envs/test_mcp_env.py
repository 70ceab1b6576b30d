"""MCP environments against real servers: the world record server (stdio and streamable HTTP), a
small scripted server for transport failures, and the official filesystem server from npm."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from simrl.envs.base import OrderEnforcing, make, registered
from simrl.envs.mcp_env import MCPEnv, WorldMCPEnv
from simrl.errors import SimrlError
from simrl.types import Action, ToolCall
from simrl.world import load_graph, load_tasks
from simrl.world.schema import Evidence, QAGold, Task

MANUAL = Task(task_id="manual-0", type="qa", split="test", prompt="Say hello.", gold=QAGold(answer="hello"),
              evidence=Evidence(), hops=1, difficulty="easy", template="manual")


def _task(world, template):
    return next(t for t in load_tasks(world, type="records") if t.template == template)


async def _call(env, tool, /, **arguments):
    step = await env.step(Action(tool_calls=[ToolCall(name=tool, arguments=arguments)]))
    assert len(step.observation.results) == 1
    return step, step.observation.results[0]


async def _find(env, name: str) -> str:
    _, result = await _call(env, "find_by_name", name=name, type="organization")
    return json.loads(result.content)["records"][0]["id"]


def test_registered():
    assert {"mcp", "mcp-world"} <= set(registered())


def test_world_server_tools_pages_and_errors(tiny_world):
    graph = load_graph(tiny_world)
    orgs = sorted(n for n, d in graph.nodes(data=True) if d["type"] == "organization")

    async def main():
        env = make("mcp-world", world=tiny_world)
        try:
            obs = await env.reset(_task(tiny_world, "count_members"), seed=0)
            names = {t["function"]["name"] for t in obs.tools}
            assert {"search_records", "get_record", "find_by_name", "list_members", "list_products",
                    "update_record", "add_membership", "appoint_ceo"} <= names
            schema = next(t for t in obs.tools if t["function"]["name"] == "search_records")["function"]
            assert schema["parameters"]["type"] == "object" and "type" in schema["parameters"]["properties"]
            seen, cursor, pages = [], None, 0
            while True:
                args = {"type": "organization", "limit": 4} | ({"cursor": cursor} if cursor else {})
                step, result = await _call(env, "search_records", **args)
                assert not result.is_error and not step.info.get("env_failure")
                page = json.loads(result.content)
                seen += [r["id"] for r in page["records"]]
                pages, cursor = pages + 1, page["next_cursor"]
                if cursor is None:
                    break
            assert seen == orgs and pages == -(-len(orgs) // 4) and page["total"] == len(orgs)
            _, default = await _call(env, "search_records", type="person")
            assert len(json.loads(default.content)["records"]) == 5  # the spec's page_size
            step, result = await _call(env, "get_record", id="organization:999999")
            assert result.is_error and "no record" in result.content and not step.info.get("env_failure")
            _, result = await _call(env, "update_record", id=orgs[0], fields={"employees": "lots"})
            assert result.is_error and "integer" in result.content
            _, result = await _call(env, "no_such_tool")
            assert result.is_error and "unknown tool" in result.content
        finally:
            await env.close()
            await env.close()  # idempotent

    asyncio.run(main())


def test_read_task_solved_by_paging(tiny_world):
    task = _task(tiny_world, "count_members")
    org_name = re.search(r"members of (.+), past and present", task.prompt).group(1)

    async def main():
        env = WorldMCPEnv(tiny_world)
        await asyncio.create_task(env.reset(task, seed=0))  # reset, steps and close run in different tasks
        try:
            org = await _find(env, org_name)
            count, pages, cursor = 0, 0, None
            while True:
                args = {"org_id": org, "limit": 2} | ({"cursor": cursor} if cursor else {})
                _, result = await _call(env, "list_members", **args)
                page = json.loads(result.content)
                count, pages, cursor = count + len(page["records"]), pages + 1, page["next_cursor"]
                if cursor is None:
                    break
            assert pages > 1
            final = await asyncio.wait_for(env.step(Action.final(f"<answer>{count}</answer>")), 30)
            assert final.terminated and final.reward == 1.0 and final.info["success"]
        finally:
            await asyncio.create_task(env.close())

    asyncio.run(main())


def test_write_task_scored_on_final_state_fresh_per_episode(tiny_world):
    task = _task(tiny_world, "set_employees")
    name, number = re.search(r"^(.+) now has (\d+) employees", task.prompt).groups()

    async def main():
        async with WorldMCPEnv(tiny_world) as env:
            await env.reset(task, seed=0)
            org = await _find(env, name)
            _, result = await _call(env, "update_record", id=org, fields={"employees": int(number)})
            assert not result.is_error and json.loads(result.content)["employees"] == int(number)
            assert (await env.step(Action.final("done"))).reward == 1.0
            await env.reset(task, seed=1)  # a new episode starts from the world's records again
            assert (await env.step(Action.final("done"))).reward == 0.0

    asyncio.run(main())


def test_fault_rate_one_gives_operational_errors(tiny_world):
    async def main():
        async with WorldMCPEnv(tiny_world, fault_rate=1.0, fault_delay=0.05) as env:
            await env.reset(_task(tiny_world, "count_members"), seed=4)
            calls = [ToolCall(name="get_record", arguments={"id": "organization:000001"})] * 6
            step = await env.step(Action(tool_calls=calls))
            assert len(step.observation.results) == 6 and not step.info.get("env_failure")
            for result in step.observation.results:
                assert result.is_error and re.search(r": (429 Too Many|503 Service|504 Gateway)", result.content), result.content

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamable_http_transport(tiny_world):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "simrl.cli.main", "serve", "mcp", "--world", str(tiny_world),
                             "--transport", "http", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""

        async def main():
            async with MCPEnv(server_url=f"http://127.0.0.1:{port}/mcp") as env:
                obs = await env.reset(MANUAL)
                assert "list_members" in {t["function"]["name"] for t in obs.tools}
                _, result = await _call(env, "get_record", id="organization:000001")
                assert not result.is_error and json.loads(result.content)["id"] == "organization:000001"

        asyncio.run(main())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_FLAKY_SERVER = """
import os, time
from mcp.server.mcpserver import MCPServer
server = MCPServer("flaky", log_level="WARNING")
@server.tool()
def echo(text: str) -> str:
    return text
@server.tool()
def slow() -> str:
    time.sleep(5)
    return "late"
@server.tool()
def crash() -> str:
    os._exit(3)
server.run("stdio")
"""


def test_transport_failures_are_observations(tmp_path):
    script = tmp_path / "flaky.py"
    script.write_text(textwrap.dedent(_FLAKY_SERVER))

    async def main():
        async with OrderEnforcing(MCPEnv(server_command=[sys.executable, str(script)], call_timeout=1.0)) as env:
            obs = await env.reset(MANUAL)
            assert {t["function"]["name"] for t in obs.tools} == {"echo", "slow", "crash"}
            _, result = await _call(env, "echo", text="hi")
            assert result.content == "hi" and not result.is_error
            step, result = await _call(env, "slow")
            assert result.is_error and step.info["env_failure"] and not step.truncated
            step, result = await _call(env, "crash")
            assert result.is_error and step.info["env_failure"] and step.truncated  # the server is gone
            over = await env.step(Action.call("echo", text="anyone?"))  # the episode ended: OrderEnforcing's
            assert over.info["episode_over"] and "call reset" in over.observation.text  # error step
            await env.reset(MANUAL)  # a new episode starts a new server
            _, result = await _call(env, "echo", text="back")
            assert result.content == "back"
            final = await env.step(Action.final("hello"))
            assert final.reward == 1.0 and final.terminated  # a qa task built by hand: exact match
        with pytest.raises(SimrlError, match="could not connect"):
            await MCPEnv(server_command=[sys.executable, "-c", "pass"], connect_timeout=10).reset(MANUAL)

    asyncio.run(main())


def test_official_filesystem_server(tmp_path):
    if shutil.which("npx") is None:
        pytest.skip("npx is not installed: cannot run @modelcontextprotocol/server-filesystem")
    root = tmp_path / "files"
    root.mkdir()
    (root / "note.txt").write_text("hello from simrl\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("TOP-SECRET-CONTENT")

    async def main():
        env = MCPEnv(server_command=["npx", "-y", "@modelcontextprotocol/server-filesystem", str(root)],
                     connect_timeout=120)
        try:
            try:
                obs = await env.reset(MANUAL)
            except SimrlError as err:
                pytest.skip(f"@modelcontextprotocol/server-filesystem could not be installed or started: {err}")
            names = {t["function"]["name"] for t in obs.tools}
            assert len(names) >= 10 and "read_text_file" in names
            _, result = await _call(env, "read_text_file", path=str(root / "note.txt"))
            assert not result.is_error and "hello from simrl" in result.content
            step, result = await _call(env, "read_text_file", path=str(outside))
            assert result.is_error and "TOP-SECRET" not in result.content and not step.info
        finally:
            await env.close()

    asyncio.run(main())


def test_stdio_server_writes_only_protocol_to_stdout(tiny_world):
    request = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}}
    out = subprocess.run([sys.executable, "-m", "simrl.cli.main", "serve", "mcp", "--world", str(tiny_world)],
                         input=json.dumps(request) + "\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    messages = [json.loads(line) for line in out.stdout.splitlines()]  # every line is JSON-RPC
    assert messages[0]["id"] == 1 and messages[0]["result"]["serverInfo"]["name"] == "simrl-records"


def test_cli_rejects_a_missing_world():
    from simrl.cli.main import app

    result = CliRunner().invoke(app, ["serve", "mcp", "--world", "/nonexistent"])
    assert result.exit_code == 2
    assert "not a world folder" in result.output + (result.stderr or "")
    bad = CliRunner().invoke(app, ["serve", "mcp", "--world", "/", "--transport", "carrier-pigeon"])
    assert bad.exit_code == 2


def test_world_server_refuses_oversized_arguments_with_a_reason(tiny_world):
    """Integers past 2**63 and megabyte patterns reach the real server (stdio) and come back as tool errors
    that name the argument, not as an unexplained failure."""

    async def main():
        async with WorldMCPEnv(tiny_world) as env:
            await env.reset(_task(tiny_world, "count_members"), seed=0)
            org = await _find(env, load_graph(tiny_world).nodes[sorted(
                n for n, d in load_graph(tiny_world).nodes(data=True) if d["type"] == "organization")[0]]["name"])
            cases = [("update_record", {"id": org, "fields": {"employees": 2 ** 63}}, "64-bit"),
                     ("search_records", {"type": "organization", "limit": 2 ** 64}, "64-bit"),
                     ("find_by_name", {"name": "%" * 2_000_000}, "at most 1000"),
                     ("search_records", {"type": "person", "filters": {"name": ["x"] * 500}}, "at most 200")]
            for tool, args, reason in cases:
                step, result = await _call(env, tool, **args)
                assert result.is_error and reason in result.content, (tool, result.content[:200])
                assert not step.info.get("env_failure")
            _, ok = await _call(env, "get_record", id=org)  # the server is still serving
            assert not ok.is_error

    asyncio.run(main())
