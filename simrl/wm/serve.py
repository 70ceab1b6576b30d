"""Serve a world model with vLLM: the command line a model needs, and a managed ``vllm serve`` process.

:func:`vllm_command` builds ``vllm serve MODEL ...`` with the options of the model's family
(:data:`FAMILIES`; docs/design.md §4: Qwen-AgentWorld is served with ``--max-model-len 262144
--reasoning-parser qwen3 --language-model-only --trust-remote-code``). :class:`VLLMServer` runs that
command as a subprocess in its own process group, its output in a log file, waits until
``GET /health`` and ``GET /v1/models`` answer, and stops the whole group (SIGTERM, then SIGKILL after
a grace period), so no vLLM engine process outlives it. The endpoint it gives is what the ``openai``
world-model backend (:class:`~simrl.wm.openai_backend.OpenAIBackend`) and recipe arms with
``backend: openai`` take; any other OpenAI-compatible endpoint works the same way.

Example::

    with VLLMServer("Qwen/Qwen-AgentWorld-35B-A3B", tensor_parallel_size=4) as server:
        backend = OpenAIBackend(server.base_url, server.model_id)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from simrl.errors import SimrlError

INSTALL_HINT = "install vLLM with: pip install 'simrl[gpu]' (on a CUDA machine), or pass --vllm-bin PATH"


class Family(NamedTuple):
    """A model family: how to recognise it and the ``vllm serve`` options it needs."""

    name: str
    markers: tuple[str, ...]
    """Lower-case substrings of the model id or path that identify the family."""
    options: tuple[tuple[str, str | None], ...]
    """``(flag, value)`` pairs; value None for a switch."""


FAMILIES: tuple[Family, ...] = (
    Family("qwen-agentworld", ("qwen-agentworld",),
           (("--max-model-len", "262144"), ("--reasoning-parser", "qwen3"), ("--language-model-only", None),
            ("--trust-remote-code", None))),
    Family("qwen3", ("qwen3",), (("--reasoning-parser", "qwen3"),)),
)
"""Known families, first match wins (docs/design.md §4 for Qwen-AgentWorld; Qwen3 models reason in
``<think>``, which vLLM's ``qwen3`` reasoning parser splits off). Unknown models get no extra options."""


OWNED_FLAGS: dict[str, str] = {"--host": "--host", "--port": "--port", "--tensor-parallel-size": "--tensor-parallel-size",
                               "-tp": "--tensor-parallel-size", "--served-model-name": "--served-model-name"}
"""``vllm serve`` flags that simrl sets from its own options (vllm flag -> simrl option): given again in
``extra_args`` they would send the readiness check to the wrong address or model id."""


def model_family(model: str) -> Family | None:
    """The :data:`FAMILIES` entry whose marker occurs in ``model`` (case-insensitive), or None."""
    lowered = model.lower()
    return next((f for f in FAMILIES if any(m in lowered for m in f.markers)), None)


def vllm_command(model: str, *, tensor_parallel_size: int = 1, port: int = 8000, host: str = "127.0.0.1",
                 max_model_len: int | None = None, served_model_name: str | None = None,
                 extra_args: Sequence[str] = (), vllm_bin: str = "vllm") -> list[str]:
    """The ``vllm serve`` argv for ``model``, with its family's options.

    Args:
        model: a Hugging Face id or a local folder, e.g. ``Qwen/Qwen-AgentWorld-35B-A3B``.
        tensor_parallel_size: GPUs the model is split over.
        port, host: where the OpenAI-compatible API listens.
        max_model_len: context length in tokens; overrides the family's default.
        served_model_name: the model id clients use (default: ``model`` as given).
        extra_args: further ``vllm serve`` arguments, appended; a family option whose flag appears
            here is left out, so ``extra_args`` overrides it (e.g. ``--reasoning-parser deepseek_r1``).
        vllm_bin: the ``vllm`` executable (argv[0]).

    Returns:
        ``[vllm_bin, "serve", model, "--host", host, "--port", port, "--tensor-parallel-size", n,
        *family options, *extra_args]``, all strings.

    Raises:
        SimrlError: a tensor-parallel size, port or max model length out of range; ``extra_args`` giving
            one of :data:`OWNED_FLAGS` (the host, port, parallelism or model id simrl must know).
    """
    if tensor_parallel_size < 1:
        raise SimrlError(f"--tensor-parallel-size must be at least 1, got {tensor_parallel_size}")
    if not 1 <= port <= 65535:
        raise SimrlError(f"--port must be in 1..65535, got {port}")
    if max_model_len is not None and max_model_len < 1:
        raise SimrlError(f"--max-model-len must be positive, got {max_model_len}")
    extra = [str(a) for a in extra_args]
    given = {a.split("=", 1)[0] for a in extra if a.startswith("-")}
    owned = sorted(given & set(OWNED_FLAGS))
    if owned:
        raise SimrlError(f"pass {', '.join(OWNED_FLAGS[f] for f in owned)} as simrl's own option (before `--`), not "
                         "as a vllm argument: simrl waits for the server at that address under that model id")
    argv = [vllm_bin, "serve", model, "--host", host, "--port", str(port),
            "--tensor-parallel-size", str(tensor_parallel_size)]
    family = model_family(model)
    options = list(family.options) if family else []
    if max_model_len is not None:
        options = [o for o in options if o[0] != "--max-model-len"] + [("--max-model-len", str(max_model_len))]
    for flag, value in options:
        if flag not in given:
            argv += [flag] if value is None else [flag, value]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    return argv + extra


def client_host(host: str) -> str:
    """The address a client on this machine connects to for a server bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def http_root(host: str, port: int) -> str:
    """``http://HOST:PORT`` for a client on this machine (IPv6 hosts in brackets)."""
    h = client_host(host)
    return f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}"


def log_tail(path: str | Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (``""`` if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64_000))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class VLLMServer:
    """A ``vllm serve`` subprocess, ready when its health and model endpoints answer.

    Args:
        model, tensor_parallel_size, port, host, max_model_len, served_model_name, extra_args,
            vllm_bin: as in :func:`vllm_command`; ``vllm_bin`` is looked up on ``PATH`` unless a path.
        log: file the server's stdout and stderr go to (default: a new ``simrl-vllm-*.log`` in the
            temp folder).
        timeout: seconds to wait for readiness (loading a 35B model takes minutes).
        grace: seconds between SIGTERM and SIGKILL when stopping.
        env: extra environment variables for the server (e.g. ``CUDA_VISIBLE_DEVICES``).

    Attributes:
        command: the argv run. base_url: ``http://HOST:PORT/v1``. model_id: the id clients send.
        log_path: the log file. process: the :class:`subprocess.Popen` while running.

    Raises:
        SimrlError (from :meth:`start`): no ``vllm`` executable; the port is taken; the process
        exits before it is ready, or is not ready within ``timeout`` (both with the log's tail).
    """

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, port: int = 8000, host: str = "127.0.0.1",
                 max_model_len: int | None = None, served_model_name: str | None = None,
                 extra_args: Sequence[str] = (), vllm_bin: str = "vllm", log: str | Path | None = None,
                 timeout: float = 1800.0, grace: float = 30.0, env: dict[str, str] | None = None) -> None:
        self.command = vllm_command(model, tensor_parallel_size=tensor_parallel_size, port=port, host=host,
                                    max_model_len=max_model_len, served_model_name=served_model_name,
                                    extra_args=extra_args, vllm_bin=vllm_bin)
        self.host, self.port, self.timeout, self.grace = host, port, timeout, grace
        self.model_id = served_model_name or model
        self.root = http_root(host, port)
        self.base_url = f"{self.root}/v1"
        self.log_path = Path(log) if log is not None else None
        self.env = dict(env or {})
        self.process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> VLLMServer:
        """Launch the server and wait until it is ready; on failure the process group is stopped."""
        binary = shutil.which(self.command[0])
        if binary is None:
            raise SimrlError(f"vllm executable {self.command[0]!r} not found on PATH; {INSTALL_HINT}")
        self._check_port()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="simrl-vllm-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([binary, *self.command[1:]], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            env={**os.environ, **self.env})
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _check_port(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as err:
                raise SimrlError(f"cannot listen on {self.host}:{self.port} ({err.strerror}); "
                                 "choose another --port") from None

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.timeout
        with httpx.Client(timeout=5.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise self._failure(f"exited with code {self.process.returncode} before it was ready")
                if self._ready(client):
                    return
                if time.monotonic() > deadline:
                    raise self._failure(f"was not ready within {self.timeout:g}s (raise --timeout if the "
                                        "model is still loading)")
                time.sleep(0.25)

    def _ready(self, client) -> bool:
        import httpx

        try:
            if client.get(f"{self.root}/health").status_code != 200:
                return False
            models = client.get(f"{self.base_url}/models")
        except httpx.HTTPError:
            return False
        try:
            ids = [m.get("id") for m in models.json().get("data", [])] if models.status_code == 200 else None
        except (ValueError, AttributeError):  # not the model listing (yet)
            ids = None
        if ids is None:
            return False
        if self.model_id not in ids:
            raise self._failure(f"serves {ids}, not {self.model_id!r}")
        return True

    def _failure(self, what: str) -> SimrlError:
        tail = log_tail(self.log_path) if self.log_path else ""
        return SimrlError(f"vllm ({' '.join(self.command[:3])}) {what}; log {self.log_path}, last lines:\n"
                          f"{tail or '(empty)'}", exit_code=1)

    def stop(self) -> int | None:
        """Stop the whole process group: SIGTERM, then SIGKILL after ``grace`` s; idempotent.

        Returns the server's exit code (None if it was never started).
        """
        proc = self.process
        if proc is None:
            return None
        try:
            if self._group_alive(proc):
                self._signal(signal.SIGTERM)
            end = time.monotonic() + self.grace
            while time.monotonic() < end and self._group_alive(proc):
                time.sleep(0.05)
        except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
            pass
        finally:
            if self._group_alive(proc):  # checked first: an empty group's id may be reused
                self._signal(signal.SIGKILL)
            proc.wait()
        return proc.returncode

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    def _group_alive(proc: subprocess.Popen) -> bool:
        proc.poll()  # reap the leader if it ended, so only live members count
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
