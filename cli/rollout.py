"""``simrl rollout``: run a policy on a world's tasks in an environment and record trajectories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from simrl.cli.env import (
    WmApiKeyOpt,
    WmBaseUrlOpt,
    WmCacheOpt,
    WmModelOpt,
    WmPromptOpt,
    WmReplayOpt,
    WmTemperatureOpt,
    WorldModelOpt,
    env_options,
    wm_options,
)
from simrl.cli.options import (
    CONCURRENCY,
    MAX_TURNS,
    POLICY_HELP,
    SPLIT,
    ConcurrencyOpt,
    MaxTurnsOpt,
    ModeOpt,
    SplitOpt,
    rollout_env,
)

_ENV, _POL, _EP, _PERT, _OUT = "Environment", "Policy", "Episodes", "Perturbations", "Output"


def rollout(
    env: Annotated[str, typer.Option("--env", "-e", parser=rollout_env, metavar="ENV", rich_help_panel=_ENV,
                                     help="Environment id: search, mcp-world, bfcl, mcp (with --server-command or "
                                          "--server-url) or your own (`simrl --import MODULE`); see `simrl env list`.")],
    out: Annotated[Path, typer.Option("--out", "-o", rich_help_panel=_OUT,
                                      help="Trajectories JSONL, one line per finished episode (flushed as it "
                                           "ends). An existing file is an error unless --append.")],
    append: Annotated[bool, typer.Option(help="Add to an existing --out file instead of refusing.",
                                         rich_help_panel=_OUT)] = False,
    world: Annotated[Path | None, typer.Option(help="World folder (from `simrl world generate`); not for bfcl.",
                                               rich_help_panel=_ENV)] = None,
    server_command: Annotated[str | None, typer.Option(
        help="For `mcp`: the command that starts any MCP server over stdio, e.g. \"simrl serve mcp --world W\" "
             "(the tasks come from --world).", rich_help_panel=_ENV)] = None,
    server_url: Annotated[str | None, typer.Option(help="For `mcp`: a streamable-HTTP MCP server URL.",
                                                   rich_help_panel=_ENV)] = None,
    policy: Annotated[str, typer.Option("--policy", "-p", help=POLICY_HELP, rich_help_panel=_POL)] = "expert",
    split: SplitOpt = SPLIT,
    n: Annotated[int | None, typer.Option("-n", help="At most this many tasks (default: all of the split).",
                                          min=1, rich_help_panel=_EP)] = None,
    max_turns: MaxTurnsOpt = MAX_TURNS,
    concurrency: ConcurrencyOpt = CONCURRENCY,
    seed: Annotated[int, typer.Option(help="Base episode seed (episode i gets seed + i).",
                                      rich_help_panel=_EP)] = 0,
    world_model: WorldModelOpt = "real",
    wm_model: WmModelOpt = None,
    wm_base_url: WmBaseUrlOpt = None,
    wm_api_key: WmApiKeyOpt = None,
    wm_cache: WmCacheOpt = None,
    wm_replay: WmReplayOpt = False,
    wm_prompt: WmPromptOpt = None,
    wm_temperature: WmTemperatureOpt = 0.0,
    schedule: Annotated[str | None, typer.Option(
        help="Perturbation schedule: a YAML path or a shipped name (gentle, mcpmark, fault-heavy); "
             "see `simrl perturb preview`.", rich_help_panel=_PERT)] = None,
    mode: ModeOpt = "inject",
    progress: Annotated[float, typer.Option(help="Training progress in [0, 1] at which the schedule's "
                                                 "curriculum is read (1.0: its final rates).", min=0, max=1,
                                            rich_help_panel=_PERT)] = 1.0,
    perturb_seed: Annotated[int, typer.Option(help="Seed of the perturbation draws.", rich_help_panel=_PERT)] = 0,
    control_retries: Annotated[int, typer.Option(
        help="--mode control: re-ask the world model this many times when its prediction does not comply, "
             "before injecting the perturbation in code.", min=0, rich_help_panel=_PERT)] = 0,
) -> None:
    """Run a policy on a world's tasks in an environment, write trajectories, print a summary table.

    Example, the scripted expert on a world's dev tasks:

    simrl rollout --env mcp-world --world runs/worlds/tiny-0 --split dev -n 8 --out runs/traj/records.jsonl

    Example, any MCP server (here a world's record server over stdio) with an endpoint's model:

    simrl rollout -e mcp --server-command "simrl serve mcp --world W" --world W -p openai:http://127.0.0.1:8000/v1#MODEL -o runs/traj/mcp.jsonl

    Example, an endpoint's model in the world-model version with injected faults:

    simrl rollout -e search --world W -p openai:http://127.0.0.1:8000/v1#MODEL --world-model oracle --schedule fault-heavy -o runs/traj/llm.jsonl
    """
    from rich.console import Console

    from simrl.policies import episode_tasks, make_policy

    _check_out(out, append)
    tasks = episode_tasks(env, world, split, n)
    options = env_options(env, world, server_command, server_url)
    pol = make_policy(policy, env, world, tasks)
    options |= wm_options(world_model, wm_model, wm_base_url, wm_api_key, wm_cache, wm_replay, wm_prompt,
                          wm_temperature)
    make_env = _env_factory(env, world, world_model, options, schedule, progress=progress, mode=mode,
                            seed=perturb_seed, control_retries=control_retries)
    console = Console(stderr=True)
    trajs = _run(make_env, pol, tasks, out, console, f"{env} / {policy}", max_turns=max_turns,
                 concurrency=concurrency, seed=seed)
    _report(trajs, tasks, env, out, console, n=n, split=split, schedule=schedule, mode=mode,
            world_model=world_model, wm_cache=wm_cache, wm_replay=wm_replay)


def _check_out(out: Path, append: bool) -> None:
    """Refuse an --out file that holds trajectories unless --append (before anything runs)."""
    from simrl.errors import SimrlError

    if out.exists() and out.stat().st_size > 0 and not append:
        raise SimrlError(f"--out {out} already holds trajectories: pass --append to add to it, or choose "
                         "another file")


def _report(trajs: list, tasks: list, env: str, out: Path, console, *, n: int | None, split: str,
            schedule: str | None, mode: str, world_model: str, wm_cache: Path | None, wm_replay: bool) -> None:
    """Print the episodes' tables (per task type; per perturbation with a schedule), control compliance and the
    world model's cache use."""
    from simrl.perturb import split_table
    from simrl.policies import env_task_types
    from simrl.rollout_summary import compliance_lines, episode_table
    from simrl.tables import print_table

    if n is not None and len(trajs) < n:
        console.print(f"note: -n {n} asked for more episodes than ran ({len(trajs)}): the {split} split "
                      f"has only {len(tasks)} {env} task(s)", style="yellow")
    kinds = env_task_types()[env] or tuple(dict.fromkeys(t.type for t in tasks))
    print_table(episode_table(trajs, tasks, kinds, f"{len(trajs)} episodes -> {out}"))
    if schedule:
        print_table(split_table(trajs))
    for line in compliance_lines(trajs) if schedule and mode == "control" else []:
        console.print(line)
    if world_model != "real":
        from simrl.wm.factory import shared_cache

        cache = shared_cache(wm_cache, wm_replay)
        if cache.mode != "off":
            console.print(f"world-model cache {cache.path}: {cache.hits} hits, {cache.misses} misses")


def _env_factory(env: str, world: Path | None, world_model: str, options: dict, schedule: str | None, **perturb):
    """``make(env, **options)`` in the schedule's perturbation wrapper (a bad schedule fails here); a world model's
    options are checked by making one first, before any episode."""
    import asyncio

    from simrl.envs.base import make
    from simrl.perturb import perturbed_factory

    if world is not None and world_model != "real":
        options.setdefault("world", world)  # a world model reads the world's facts for its tasks
    if world_model != "real":
        asyncio.run(make(env, **options).close())  # fail fast on bad world-model options, before any episode
    return perturbed_factory(lambda: make(env, **options), schedule, **perturb)


def _run(make_env, pol, tasks: list, out: Path, console, label: str, **rollout_options) -> list:
    """The episodes, written to ``out`` as they end, with a progress bar (its line: the success count)."""
    import asyncio

    from simrl.progress import progress_bar
    from simrl.rollout import TrajectoryWriter, rollout

    writer = TrajectoryWriter(out)
    if writer.torn_line is not None:
        console.print(f"note: {out}:{writer.torn_line} is a torn record (its writer was killed mid-line); it is "
                      "left on its own line, which readers skip, and new records start after it", markup=False)
    stats = {"success": 0, "failure": 0, "env_failure": 0, "truncated": 0}
    with progress_bar(console=console) as bar:
        job = bar.add_task(label, total=len(tasks))

        def done(traj) -> None:
            stats[traj.status] += 1
            bar.update(job, advance=1, description=f"{label}  success {stats['success']}")

        trajs = asyncio.run(rollout(make_env, pol, tasks, writer=writer, on_done=done, **rollout_options))
    writer.close()
    return trajs
