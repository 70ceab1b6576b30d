"""``simrl wm data``: export real transitions as chat-format training data for a world model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def data(
    trajectories: Annotated[list[Path], typer.Option(
        "--trajectories", help="Real trajectories JSONL from `simrl rollout` (search, mcp-world, bfcl, ...) or an "
                               "AgentWorldBench-format JSONL file or folder; repeat the option for several.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: train.jsonl, train.parquet and manifest.json (and "
                                           "agentworldbench/ with --format ...,agentworldbench).")],
    world: Annotated[Path | None, typer.Option(
        help="World folder the trajectories were recorded in: its facts go into the system prompt, as the "
             "world-model environment shows them (search, mcp-world).")] = None,
    perturb: Annotated[int, typer.Option(
        help="Add N perturbed variants: N transitions (seeded) get a perturbation applied to the real "
             "observation in code, with its control instruction in the last user message.", min=0)] = 0,
    schedule: Annotated[str | None, typer.Option(
        help="Perturbation schedule (YAML path or shipped name: gentle, mcpmark, fault-heavy) whose types, "
             "parameters and targets the variants use; default: every recoverable type.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the variant draws (same seed, same files).")] = 0,
    format: Annotated[str, typer.Option(  # noqa: A002 - the option's name
        "--format", help="Comma-separated output formats: jsonl, parquet (the chat rows: train.jsonl, "
                         "train.parquet), agentworldbench (the real transitions as AgentWorldBench files, "
                         "agentworldbench/<domain>_test.jsonl, as the benchmark's eval.py reads them).")] = "jsonl,parquet",
    wm_tools: Annotated[str, typer.Option(
        help="Tool definitions in each row's system prompt: `all` (the episode's) or `called` (only the tools "
             "called so far, this call included: what `simrl wm eval --wm-tools called` shows; for small-context "
             "models).")] = "all",
    think: Annotated[bool, typer.Option(
        help="Start each target with an empty <think></think> block before <predicted_observation>.")] = True,
) -> None:
    """Export real transitions (system prompt with tools, history, action -> observation) as chat rows.

    Each row ends with the real observation as the world model must answer it (<predicted_observation>...</predicted_observation>), with the columns domain, env_id, task_id, trajectory, turn_idx, perturbation and control_instruction: the input of the continual-pretraining / SFT stages that build a world model.
    """
    from rich.console import Console
    from rich.table import Table

    from simrl.errors import SimrlError
    from simrl.tables import print_table
    from simrl.wm.data import export, parse_formats

    formats = parse_formats(format)
    if schedule and not perturb:
        raise SimrlError("--schedule picks the types of the perturbed variants: give --perturb N as well")
    manifest = export(list(trajectories), out, world=world, perturb=perturb, schedule=schedule, seed=seed,
                      formats=tuple(formats), think=think, tools=wm_tools)
    counts = manifest["counts"]
    console = Console()
    table = Table(title=f"{counts['rows']} rows -> {out}")
    for col in ("domain", "rows", "perturbed rows"):
        table.add_column(col)
    for domain in sorted(set(counts["by_domain"]) | set(counts["perturbed_by_domain"])):
        table.add_row(domain, str(counts["by_domain"].get(domain, 0)), str(counts["perturbed_by_domain"].get(domain, 0)))
    print_table(table, console)
    if counts["by_perturbation"]:
        kinds = Table(title="perturbed rows by type")
        kinds.add_column("perturbation")
        kinds.add_column("rows")
        for kind, n in counts["by_perturbation"].items():
            kinds.add_row(kind, str(n))
        print_table(kinds, console)
    if counts["variants_unavailable"]:
        console.print(f"only {counts['perturbed']} of {perturb} variants: no fitting perturbation for the other calls")
    for reason, n in counts["skipped"].items():
        if n:
            console.print(f"skipped {n}: {reason.replace('_', ' ')}")
    console.print(f"files: {', '.join(manifest['files'])}, manifest.json")
