"""``simrl serve world-model``: serve a world model with vLLM and print how to point simrl at it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def world_model(
    model: Annotated[str, typer.Option(help="Model to serve: a Hugging Face id or a local folder, e.g. "
                                            "Qwen/Qwen-AgentWorld-35B-A3B.")],
    tensor_parallel_size: Annotated[int, typer.Option(help="GPUs to split the model over.", min=1)] = 1,
    port: Annotated[int, typer.Option(help="TCP port of the OpenAI-compatible API.", min=1, max=65535)] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for all).")] = "127.0.0.1",
    max_model_len: Annotated[int | None, typer.Option(
        help="Context length in tokens (default: the model family's, 262144 for Qwen-AgentWorld; "
             "else vLLM's).", min=1)] = None,
    served_model_name: Annotated[str | None, typer.Option(
        help="Model id clients send (default: --model as given).")] = None,
    vllm_bin: Annotated[str, typer.Option(help="The vllm executable (name on PATH or a path).")] = "vllm",
    dry_run: Annotated[bool, typer.Option(help="Print the vllm command and exit.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to be ready "
                                                "(model download and load included).", min=1)] = 1800.0,
    log: Annotated[Path | None, typer.Option(
        help="File for vLLM's output (default: a new simrl-vllm-*.log in the temp folder).")] = None,
    extra: Annotated[list[str] | None, typer.Argument(
        help="Further `vllm serve` arguments, after `--` (e.g. -- --gpu-memory-utilization 0.85); "
             "they override the family's options.", show_default=False)] = None,
) -> None:
    """Start `vllm serve` with the options the model needs, wait until it is ready, print the endpoint.

    Family options: Qwen-AgentWorld gets --max-model-len 262144 --reasoning-parser qwen3 --language-model-only --trust-remote-code; other Qwen3 models get --reasoning-parser qwen3.

    Prints the endpoint (http://HOST:PORT/v1), the model id, a recipe arm and a `simrl rollout` line that use it, then serves until Ctrl-C or SIGTERM and stops vLLM (its whole process group).

    Recipes may instead name any running OpenAI-compatible endpoint (backend: openai, base_url, model).
    """
    import shlex
    import signal
    import time

    from simrl.errors import SimrlError
    from simrl.wm.serve import VLLMServer, log_tail, vllm_command

    options = dict(tensor_parallel_size=tensor_parallel_size, port=port, host=host, max_model_len=max_model_len,
                   served_model_name=served_model_name, extra_args=extra or [], vllm_bin=vllm_bin)
    if dry_run:
        typer.echo(shlex.join(vllm_command(model, **options)))
        return

    def _terminate(signum, frame):  # SIGTERM: leave the same way as Ctrl-C, through the cleanup below
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    server = VLLMServer(model, **options, log=log, timeout=timeout)
    typer.echo(f"starting: {shlex.join(server.command)}", err=True)
    try:
        server.start()
        typer.echo(f"vllm pid {server.process.pid}, log {server.log_path}", err=True)
        _print_usage(server.base_url, server.model_id, host, port)
        while server.running:
            time.sleep(0.5)
        raise SimrlError(f"vllm exited with code {server.process.returncode} while serving; log "
                         f"{server.log_path}, last lines:\n{log_tail(server.log_path)}", exit_code=1)
    except KeyboardInterrupt:
        typer.echo("stopping vllm ...", err=True)
    finally:
        code = server.stop()
        signal.signal(signal.SIGTERM, previous)
    if code is not None:
        typer.echo(f"vllm stopped (exit code {code})", err=True)


def _print_usage(base_url: str, model_id: str, host: str, port: int) -> None:
    """The endpoint, and how a recipe arm and `simrl rollout` use it (stdout, flushed)."""
    import shlex
    import socket

    typer.echo(f"endpoint: {base_url}\nmodel: {model_id}")
    if host in ("0.0.0.0", "::"):
        typer.echo(f"from other machines: http://{socket.getfqdn()}:{port}/v1")
    typer.echo("\nrecipe arm (under `arms:`):\n"
               "  sim-controlled:\n"
               "    environment: world_model\n"
               "    backend: openai\n"
               f"    base_url: {base_url}\n"
               f"    model: {model_id}\n"
               "    schedule: mcpmark\n"
               "    mode: control\n"
               "\nrollout:\n"
               "  simrl rollout --env mcp-world --world WORLD --out trajectories.jsonl "
               f"--world-model openai --wm-base-url {base_url} --wm-model {shlex.quote(model_id)}\n"
               "\nserving; Ctrl-C to stop.")
