"""``simrl env``: list environments and run the environment checker on them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from simrl.cli.options import WORLD_MODELS, name_model, registered_env

app = typer.Typer(help="List registered environments and check them with the environment checker.",
                  no_args_is_help=True)


@app.command("list")
def list_envs(
    wide: Annotated[bool, typer.Option("--wide", "-w", help="Also show each environment's task types, whether it "
                                                            "has a world-model version and an oracle, and the "
                                                            "module that registered it (a plugin's).")] = False,
) -> None:
    """List the registered environments (built-in, installed plugins, and `simrl --import` modules).

    Example: simrl env list --wide
    """
    from simrl.envs.base import registered

    if not wide:
        for env_id, description in registered().items():
            typer.echo(f"{env_id:12s} {description}")
        return
    from rich.table import Table

    from simrl.envs.base import specs
    from simrl.envs.registry import module_of
    from simrl.tables import print_table
    from simrl.wm.env_truth import oracle_envs, supported

    simulated, oracle = set(supported()), set(oracle_envs())
    table = Table("id", "task types", "world model", "oracle", "module", "description")
    for env_id, env_spec in specs().items():
        table.add_row(env_id, ", ".join(env_spec.task_types) or "any (a world's)",
                      "yes" if env_id in simulated else "no", "yes" if env_id in oracle else "no",
                      module_of(env_spec), env_spec.description)
    print_table(table)


def env_options(env_id: str, world: Path | None, server_command: str | None, server_url: str | None) -> dict:
    """Keyword options for ``make(env_id, ...)`` from the shared CLI options (raises SimrlError if missing)."""
    from simrl.envs.base import spec
    from simrl.errors import SimrlError

    env_spec = spec(env_id)
    if env_spec.needs_server:
        if not (server_command or server_url):
            raise SimrlError(f"env {env_id!r} needs --server-command \"CMD ARGS\" or --server-url URL")
        return {"server_command": server_command, "server_url": server_url}
    if env_spec.needs_world:
        if world is None:
            raise SimrlError(f"env {env_id!r} needs --world DIR (make one with `simrl world generate`)")
        return {"world": world}
    return {}


def wm_options(world_model: str, model: str | None, base_url: str | None, api_key: str | None,
               cache: Path | None, replay: bool, prompt: Path | None, temperature: float) -> dict:
    """Keyword options for ``make`` from ``--world-model NAME[:MODEL]`` and the ``--wm-*`` options (``{}`` for ``real``).

    ``--wm-model M`` is the deprecated spelling of ``--world-model NAME:M``; it still works and says so.

    Raises:
        SimrlError: an unknown NAME, a model given twice, or ``--wm-*`` options given with ``real``.
    """
    from simrl.errors import SimrlError

    name, _, inline = world_model.partition(":")
    if name not in WORLD_MODELS:
        raise SimrlError(f"--world-model must be one of {', '.join(WORLD_MODELS)} (NAME or NAME:MODEL), "
                         f"got {world_model!r}")
    if model and inline:
        raise SimrlError(f"the world model is named twice (--world-model {world_model} and --wm-model {model}): "
                         "use --world-model NAME:MODEL alone")
    if model:
        deprecated_wm_model(name, model)
    if name == "real":
        if inline or model or base_url or cache or replay or prompt:
            raise SimrlError("--wm-* options and a :MODEL need a world model (--world-model oracle, openai:MODEL, "
                             "transformers, llamacpp)")
        return {}
    return {"world_model": name, "wm_model": inline or model, "wm_base_url": base_url, "wm_api_key": api_key,
            "wm_cache": cache, "wm_replay": replay, "wm_prompt": prompt, "wm_temperature": temperature}


def deprecated_wm_model(name: str, model: str) -> None:
    """Warn (stderr, one line) that ``--wm-model M`` is the old spelling of ``NAME:M``."""
    typer.secho(f"note: --wm-model is deprecated; write --world-model {name}:{model}", err=True, fg="yellow")


WM_HELP = {
    "world_model": "NAME[:MODEL]: `real` (the real tools), `oracle` (the world's ground truth, idealised), "
                   "`openai:MODEL` (an OpenAI-compatible endpoint, with --wm-base-url), `transformers[:PATH]` "
                   "or `llamacpp[:GGUF]` (local; default SmolLM2).",
    "wm_model": "Deprecated: write --world-model NAME:MODEL (still accepted).",
    "wm_base_url": "World model (openai): the endpoint's API root, e.g. http://127.0.0.1:8000/v1.",
    "wm_api_key": "World model (openai): API key (default: $OPENAI_API_KEY, else EMPTY).",
    "wm_cache": "World model: response cache folder (SQLite, keyed by backend, model, prompt and sampling); "
                "default: no cache.",
    "wm_replay": "World model: only replay --wm-cache (never call the model; a miss is an env failure).",
    "wm_prompt": "World model: a prompt template file replacing the domain prompt; its {tools} and {facts} "
                 "placeholders get the tool definitions and the world's facts.",
    "wm_temperature": "World model: sampling temperature (0 = greedy).",
}

# The world-model options as Annotated types, shared by every command that takes them (one declaration).
WorldModelOpt = Annotated[str, typer.Option(help=WM_HELP["world_model"], metavar="NAME[:MODEL]",
                                            parser=name_model(WORLD_MODELS, "--world-model"),
                                            rich_help_panel="World model")]
WmModelOpt = Annotated[str | None, typer.Option(help=WM_HELP["wm_model"], hidden=True)]
WmBaseUrlOpt = Annotated[str | None, typer.Option(help=WM_HELP["wm_base_url"], rich_help_panel="World model")]
WmApiKeyOpt = Annotated[str | None, typer.Option(help=WM_HELP["wm_api_key"], envvar="OPENAI_API_KEY",
                                                 show_envvar=False, rich_help_panel="World model")]
WmCacheOpt = Annotated[Path | None, typer.Option(help=WM_HELP["wm_cache"], rich_help_panel="World model")]
WmReplayOpt = Annotated[bool, typer.Option(help=WM_HELP["wm_replay"], rich_help_panel="World model")]
WmPromptOpt = Annotated[Path | None, typer.Option(help=WM_HELP["wm_prompt"], rich_help_panel="World model")]
WmTemperatureOpt = Annotated[float, typer.Option(help=WM_HELP["wm_temperature"], min=0,
                                                    rich_help_panel="World model")]


def probe_task(env_id: str, world: Path | None):
    """A task to check ``env_id`` with: a dev task of a type the environment serves, or a synthetic one."""
    from simrl.envs.base import spec
    from simrl.world.io import load_tasks
    from simrl.world.schema import Evidence, QAGold, Task

    env_spec = spec(env_id)
    if env_spec.probe_task is not None:
        return env_spec.probe_task()
    if env_spec.load_tasks is not None:  # an environment with its own tasks (a plugin's): its first dev task
        own = env_spec.tasks(world, "dev", 1)
        if own:
            return own[0]
    if world is not None and env_spec.needs_world and env_spec.task_types:
        tasks = load_tasks(world, type=env_spec.task_types[0])
        return next((t for t in tasks if t.split == "dev"), tasks[0])
    return Task(task_id="probe", type="qa", split="dev", prompt="List the tools you can use and call one.",
                gold=QAGold(answer="n/a"), evidence=Evidence(), hops=1, difficulty="easy", template="probe")


@app.command()
def check(
    env_ids: Annotated[list[str], typer.Argument(help="Environment ids to check (see `simrl env list`).",
                                                 parser=registered_env, metavar="ENV")],
    world: Annotated[Path | None, typer.Option(help="World folder, for `search`, `mcp-world` and any environment "
                                                    "that needs one.")] = None,
    server_command: Annotated[str | None, typer.Option(
        help="For `mcp`: the command that starts any MCP server over stdio, e.g. "
             "\"npx -y @modelcontextprotocol/server-filesystem /tmp\".")] = None,
    server_url: Annotated[str | None, typer.Option(help="For `mcp`: a streamable-HTTP MCP server URL.")] = None,
    world_model: WorldModelOpt = "real",
    wm_model: WmModelOpt = None,
    wm_base_url: WmBaseUrlOpt = None,
    wm_api_key: WmApiKeyOpt = None,
    wm_cache: WmCacheOpt = None,
    wm_replay: WmReplayOpt = False,
    wm_prompt: WmPromptOpt = None,
    wm_temperature: WmTemperatureOpt = 0.0,
) -> None:
    """Run the environment checker: types, determinism under a seed, errors as observations, close twice.

    With --world-model, the world-model version of each environment is checked (same id and tools).

    Exits 1 if any check fails.
    """
    import asyncio

    from simrl.envs.base import make
    from simrl.envs.checker import check_env

    failed = False
    for env_id in env_ids:
        options = env_options(env_id, world, server_command, server_url) | wm_options(
            world_model, wm_model, wm_base_url, wm_api_key, wm_cache, wm_replay, wm_prompt, wm_temperature)
        task = probe_task(env_id, world)
        asyncio.run(make(env_id, **options).close())  # fail fast on an unknown id / bad options
        outcomes = asyncio.run(check_env(lambda env_id=env_id, o=options: make(env_id, **o), task))
        for o in outcomes:
            mark = typer.style("ok", fg="green") if o.passed else typer.style("FAIL", fg="red")
            typer.echo(f"{env_id:10s} {o.name:26s} {mark} {o.detail}")
            failed |= not o.passed
    raise typer.Exit(1 if failed else 0)
