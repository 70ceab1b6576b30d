"""``simrl world``: generate fictional worlds and inspect them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Generate fictional worlds (knowledge graph, corpus, tasks) and inspect them.",
                  no_args_is_help=True)


@app.command()
def generate(
    spec: Annotated[Path, typer.Argument(help="World spec: a YAML path (e.g. worlds/tiny.yaml) or a shipped name "
                                              "(default, tiny).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the world into.")],
    seed: Annotated[int, typer.Option(help="World seed: same spec + seed + simrl version -> same bytes.")] = 0,
    entities: Annotated[int | None, typer.Option(help="Total entities (overrides the spec's `entities`).")] = None,
    graphml: Annotated[bool, typer.Option(help="Also write graph.graphml.")] = False,
    force: Annotated[bool, typer.Option(help="Replace a world already in --out.")] = False,
) -> None:
    """Generate a fictional world: knowledge graph, corpus, tasks, simulation instructions.

    Writes manifest.json, spec.yaml, graph.json, corpus.jsonl, tasks.jsonl, tasks.parquet,
    simulation.jsonl and checks.json into OUT.
    """
    import time

    from rich.console import Console

    from simrl.progress import progress_bar
    from simrl.world import STAGES, check_out, entity_count, generate_world, load_spec

    world_spec = load_spec(spec)
    entity_count(world_spec, seed, entities)  # bad arguments and a bad --out fail before the progress display
    check_out(out, force=force)
    console = Console(stderr=True)
    start = time.perf_counter()
    with progress_bar(console=console, count=False, transient=True) as bar:
        job = bar.add_task("generating", total=len(STAGES))

        def step(stage: str) -> None:
            bar.update(job, description=f"{stage} ({STAGES.index(stage) + 1}/{len(STAGES)})",
                       completed=STAGES.index(stage))

        manifest = generate_world(world_spec, seed, out, entities=entities, graphml=graphml, force=force,
                                  progress=step)
    c = manifest.counts
    tasks = sum(sum(v.values()) for v in c["tasks"].values())
    typer.echo(f"world '{manifest.spec_name}' seed {seed} -> {out}  ({time.perf_counter() - start:.1f}s)\n"
               f"  {c['entities']['total']} entities, {c['relations']['total']} relations, "
               f"{c['documents']['total']} documents, {tasks} tasks"
               + ("  [held-out world]" if manifest.heldout else "")
               + f"\n  next: simrl world inspect {out}")


@app.command()
def inspect(
    world: Annotated[Path, typer.Argument(help="A world folder written by `simrl world generate`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report instead of tables.")] = False,
    samples: Annotated[int, typer.Option(help="Example tasks to show per type.", min=0)] = 1,
) -> None:
    """Summarise a world and re-run its constraint checks and file checksums.

    Exits 1 if a constraint check fails; 2 (one line naming the files) if a file does not match its
    manifest checksum, as every command that reads a world does.
    """
    import json

    from simrl.world import WorldIndex, load_graph, load_manifest, load_tasks, verify_files
    from simrl.world.checks import check_world

    manifest = load_manifest(world)
    report = check_world(WorldIndex(load_graph(world)))
    files = verify_files(world)
    ok = report.passed and all(files.values())
    if as_json:
        typer.echo(json.dumps({"manifest": manifest.model_dump(), "checks": report.model_dump(),
                               "files": files, "ok": ok}, indent=1))
        raise typer.Exit(0 if ok else 1)
    _print_inspection(world, manifest, report, files, load_tasks(world), samples)
    raise typer.Exit(0 if ok else 1)


def _print_inspection(world, manifest, report, files, tasks, samples: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from simrl.tables import print_table

    console = Console()
    c = manifest.counts
    console.print(f"[bold]{world}[/]: spec '{manifest.spec_name}', seed {manifest.seed}, "
                  f"simrl {manifest.simrl_version}" + (" [yellow](held-out world)[/]" if manifest.heldout else ""))
    counts = Table(title="Counts", show_lines=False)
    for col in ("what", "by type", "total"):
        counts.add_column(col)
    for key in ("entities", "relations", "documents"):
        parts = ", ".join(f"{k} {v}" for k, v in c[key].items() if k != "total")
        counts.add_row(key, parts, str(c[key]["total"]))
    for kind, splits in c["tasks"].items():
        counts.add_row(f"tasks: {kind}", ", ".join(f"{s} {n}" for s, n in splits.items()), str(sum(splits.values())))
    print_table(counts, console)
    checks = Table(title="Constraint checks")
    for col in ("check", "what it verifies", "checked", "violations"):
        checks.add_column(col)
    for r in report.results:
        mark = "[green]ok[/]" if r.passed else f"[red]{r.violations}[/]"
        checks.add_row(r.name, r.description, str(r.checked), mark)
    print_table(checks, console)
    for r in report.results:
        for ex in r.examples[:3]:
            console.print(f"  [red]{r.name}[/]: {ex}")
    bad = [name for name, good in files.items() if not good]
    console.print("files: " + ("[green]all checksums match the manifest[/]" if not bad
                               else f"[red]changed or missing: {', '.join(bad)}[/]"))
    shown: dict[str, int] = {}
    for t in tasks:
        if shown.get(t.type, 0) < samples:
            shown[t.type] = shown.get(t.type, 0) + 1
            console.print(f"[bold]{t.type}[/] ({t.template}, {t.difficulty}, {t.split}): {t.prompt}")
