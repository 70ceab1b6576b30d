"""``simrl serve world-model`` and :mod:`simrl.wm.serve` against a real process: a fake ``vllm``
executable (written here) that parses ``serve MODEL --host H --port P ...`` and serves a real
OpenAI-compatible API with ``/health`` on that port, from a child process with its own child (like
vLLM's engine core), so stopping must take the whole process group. Also: many world-model episodes
sharing one ``openai`` backend never have more requests in flight at the server than its bound."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from simrl.cli.main import app
from typer.testing import CliRunner

from simrl.envs.base import make
from simrl.errors import SimrlError
from simrl.policies.expert import SearchExpert
from simrl.rollout import rollout
from simrl.testing.openai_stub import StubEndpoint, free_port
from simrl.wm.backend import Sampling
from simrl.wm.openai_backend import OpenAIBackend
from simrl.wm.serve import VLLMServer, model_family, vllm_command
from simrl.world import WorldIndex, load_graph, load_tasks

AGENTWORLD = "Qwen/Qwen-AgentWorld-35B-A3B"
# docs/design.md §4, verbatim: vllm serve Qwen/Qwen-AgentWorld-35B-A3B --tensor-parallel-size 4
# --max-model-len 262144 --reasoning-parser qwen3 --language-model-only --trust-remote-code
DESIGN_OPTIONS = ["--tensor-parallel-size", "4", "--max-model-len", "262144", "--reasoning-parser", "qwen3",
                  "--language-model-only", "--trust-remote-code"]

FAKE_VLLM = """\
#!{python}
import json, os, signal, subprocess, sys, time
from pathlib import Path

args = sys.argv[1:]
out = Path(os.environ["FAKE_VLLM_DIR"])
(out / "argv.json").write_text(json.dumps(args))
mode = os.environ.get("FAKE_VLLM_MODE", "ok")
print("fake vllm: loading", args[1], flush=True)
if mode == "crash":
    print("RuntimeError: CUDA out of memory (fake)", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "hang":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the child: only SIGKILL ends them
engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
(out / "pids.json").write_text(json.dumps([os.getpid(), engine.pid]))
if mode == "hang":
    while True:
        time.sleep(1)

from starlette.responses import PlainTextResponse
from starlette.routing import Route
from simrl.testing.openai_stub import StubEndpoint

def opt(flag, default=None):
    return args[args.index(flag) + 1] if flag in args else default

class FakeVLLM(StubEndpoint):
    def _app(self):
        app = super()._app()
        app.router.routes.append(Route("/health", lambda request: PlainTextResponse(""), methods=["GET"]))
        return app

ep = FakeVLLM(lambda body: "fake vllm says: " + body["messages"][-1]["content"],
              model=opt("--served-model-name", args[1]))
ep.port = int(opt("--port"))
ep.start()
print("fake vllm: serving on", ep.port, flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch) -> Path:
    """The fake ``vllm`` executable; it reports into ``tmp_path`` (argv.json, pids.json)."""
    path = tmp_path / "bin" / "vllm"
    path.parent.mkdir()
    path.write_text(FAKE_VLLM.format(python=sys.executable))
    path.chmod(0o755)
    monkeypatch.setenv("FAKE_VLLM_DIR", str(tmp_path))
    monkeypatch.setenv("FAKE_VLLM_MODE", "ok")
    return path


def _gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` no longer runs (absent or a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _ask(base_url: str, model: str) -> str:
    async def go() -> str:
        backend = OpenAIBackend(base_url, model, timeout=10)
        try:
            return await backend.generate([{"role": "user", "content": "ping"}], Sampling(max_tokens=8))
        finally:
            await backend.close()

    return asyncio.run(go())


# -- the command line --------------------------------------------------------------------------------
def test_vllm_command_families():
    argv = vllm_command(AGENTWORLD, tensor_parallel_size=4)
    assert argv[:3] == ["vllm", "serve", AGENTWORLD]
    assert argv[3:7] == ["--host", "127.0.0.1", "--port", "8000"]
    assert argv[7:] == DESIGN_OPTIONS
    local = vllm_command("/models/qwen-agentworld-397b-a17b", max_model_len=32768, port=9001)
    assert local[local.index("--max-model-len") + 1] == "32768" and local.count("--max-model-len") == 1
    assert "--language-model-only" in local and local[local.index("--port") + 1] == "9001"
    assert vllm_command("Qwen/Qwen3-8B")[9:] == ["--reasoning-parser", "qwen3"]
    qwen3 = vllm_command("Qwen/Qwen3-8B", served_model_name="wm", extra_args=["--reasoning-parser", "deepseek_r1"])
    assert qwen3[9:] == ["--served-model-name", "wm", "--reasoning-parser", "deepseek_r1"]  # extra args override
    plain = vllm_command("meta-llama/Llama-3.1-8B-Instruct")
    assert plain == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--host", "127.0.0.1", "--port", "8000",
                     "--tensor-parallel-size", "1"]
    assert model_family(AGENTWORLD).name == "qwen-agentworld" and model_family("Qwen/Qwen3-32B").name == "qwen3"
    with pytest.raises(SimrlError, match="tensor-parallel-size"):
        vllm_command("m", tensor_parallel_size=0)


def test_dry_run_prints_the_command():
    result = CliRunner().invoke(app, ["serve", "world-model", "--model", AGENTWORLD, "--tensor-parallel-size", "4",
                                      "--port", "8123", "--dry-run", "--", "--gpu-memory-utilization", "0.85"])
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.output.strip())
    assert argv[:3] == ["vllm", "serve", AGENTWORLD] and argv[5:7] == ["--port", "8123"]
    assert argv[7:-2] == DESIGN_OPTIONS and argv[-2:] == ["--gpu-memory-utilization", "0.85"]


def test_address_and_model_id_flags_after_the_dashes_are_refused():
    """simrl waits for the server at --host/--port under the model id: vllm must not be told otherwise."""
    for extra in (["--port", "9000"], ["--served-model-name=wm"], ["-tp", "2"], ["--host", "0.0.0.0"]):
        result = CliRunner().invoke(app, ["serve", "world-model", "--model", "m", "--dry-run", "--", *extra])
        assert result.exit_code == 2 and "as simrl's own option" in result.output, result.output
        flag = extra[0].split("=")[0].replace("-tp", "--tensor-parallel-size")
        assert flag in result.output


def test_missing_vllm_and_taken_port(tmp_path, monkeypatch, fake_vllm):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["serve", "world-model", "--model", "m"])
    assert result.exit_code == 2 and "pip install 'simrl[gpu]'" in result.output and "--vllm-bin" in result.output
    with StubEndpoint(lambda body: "x") as busy, pytest.raises(SimrlError, match="choose another --port"):
        VLLMServer("m", vllm_bin=str(fake_vllm), port=busy.port).start()
    assert not (tmp_path / "argv.json").exists()  # refused before launching


# -- the managed process -------------------------------------------------------------------------------
def test_server_ready_answers_and_stops_its_process_group(tmp_path, fake_vllm):
    port = free_port()
    with VLLMServer("Qwen/Qwen3-0.6B", port=port, vllm_bin=str(fake_vllm), served_model_name="wm",
                    log=tmp_path / "vllm.log", timeout=30) as server:
        assert server.base_url == f"http://127.0.0.1:{port}/v1" and server.model_id == "wm"
        assert _ask(server.base_url, "wm") == "fake vllm says: ping"
        server_pid, engine_pid = json.loads((tmp_path / "pids.json").read_text())
        assert server_pid == server.process.pid and not _gone(engine_pid, within=0)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv == vllm_command("Qwen/Qwen3-0.6B", port=port, served_model_name="wm")[1:]
    assert "fake vllm: serving on" in (tmp_path / "vllm.log").read_text()
    assert server.process.returncode == -signal.SIGTERM and not server.running
    assert _gone(server_pid) and _gone(engine_pid)


def test_server_that_exits_early_reports_its_log(tmp_path, fake_vllm, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "crash")
    start = time.monotonic()
    with pytest.raises(SimrlError, match="exited with code 3") as err:
        VLLMServer("m", port=free_port(), vllm_bin=str(fake_vllm), log=tmp_path / "v.log", timeout=30).start()
    assert "CUDA out of memory (fake)" in str(err.value) and "fake vllm: loading m" in str(err.value)
    assert time.monotonic() - start < 10


def test_server_never_healthy_times_out_and_is_killed(tmp_path, fake_vllm, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "hang")  # never listens, ignores SIGTERM
    server = VLLMServer("m", port=free_port(), vllm_bin=str(fake_vllm), log=tmp_path / "v.log", timeout=2,
                        grace=0.5)
    with pytest.raises(SimrlError, match="not ready within 2s") as err:
        server.start()
    assert "fake vllm: loading m" in str(err.value)
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert server.process.returncode == -signal.SIGKILL and all(_gone(p) for p in pids)


def _lines(stream, sink: queue.Queue) -> None:
    for line in stream:
        sink.put(line)


def test_cli_serves_until_sigterm(tmp_path, fake_vllm):
    port = free_port()
    cmd = [sys.executable, "-m", "simrl.cli.main", "serve", "world-model", "--model", "fake/Qwen3-tiny",
           "--vllm-bin", str(fake_vllm), "--port", str(port), "--timeout", "30", "--log", str(tmp_path / "v.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    out: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True)
    reader.start()
    try:
        printed: dict[str, str] = {}
        while "model" not in printed:
            key, _, value = out.get(timeout=30).strip().partition(": ")
            printed[key] = value
        assert printed["endpoint"] == f"http://127.0.0.1:{port}/v1" and printed["model"] == "fake/Qwen3-tiny"
        assert _ask(printed["endpoint"], printed["model"]) == "fake vllm says: ping"
        pids = json.loads((tmp_path / "pids.json").read_text())
        assert "--reasoning-parser" in json.loads((tmp_path / "argv.json").read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    reader.join(timeout=5)
    rest = "".join(out.queue)
    assert "backend: openai" in rest and f"--wm-base-url {printed['endpoint']}" in rest
    assert "stopping vllm" in proc.stderr.read()
    assert all(_gone(p) for p in pids)


# -- bounded concurrency at a shared endpoint ----------------------------------------------------------
class InFlight:
    """Responder that measures the requests in flight at the server.

    The stub records a request when it arrives and calls the responder when it answers, so
    ``len(requests) - answered`` at each answer is the number in flight just before it ends; the
    maximum over time is reached just before some answer, so this is the exact maximum.
    """

    def __init__(self) -> None:
        self.endpoint: StubEndpoint | None = None
        self.answered = self.max = 0

    def __call__(self, body: dict) -> str:
        self.max = max(self.max, len(self.endpoint.requests) - self.answered)
        self.answered += 1
        return "<predicted_observation>no results</predicted_observation>"


@pytest.mark.parametrize("bound", [4, 64])
async def test_shared_backend_bounds_requests_in_flight(tiny_world, bound):
    counter = InFlight()
    tasks = [t for t in load_tasks(tiny_world, type="qa")]
    tasks = (tasks * (64 // len(tasks) + 1))[:64]
    expert = SearchExpert(WorldIndex(load_graph(tiny_world)), tasks)
    with StubEndpoint(counter, delay=0.05) as ep:
        counter.endpoint = ep
        envs = []

        def factory():
            envs.append(make("search", world=tiny_world, world_model="openai", wm_base_url=ep.url,
                             wm_model="stub-model", wm_options={"max_concurrency": bound}, max_turns=3))
            return envs[-1]

        trajs = await rollout(factory, expert, tasks, max_turns=3, concurrency=64)
        await envs[0].unwrapped.backend.close()
    assert len(trajs) == 64 and all(t.status in ("success", "failure", "truncated") for t in trajs)
    assert len({id(e.unwrapped.backend) for e in envs}) == 1 and envs[0].unwrapped.backend.max_concurrency == bound
    assert counter.answered == len(ep.requests) >= 64
    if bound == 4:
        assert counter.max == 4  # the bound holds (<= 4), and the load reaches it
    else:
        assert counter.max > 4  # without a tight bound the same load goes past 4: the measure can fail
