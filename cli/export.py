"""``simrl export``: trajectories as chat ``messages`` (OpenAI tool-call format) in JSONL, Parquet or a HF dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simrl.choices import ExportFormat


def export(
    trajectories: Annotated[list[Path], typer.Argument(
        help="Trajectory files (simrl rollout --out, RUN/trajectories.jsonl, eval_trajectories.jsonl) or folders "
             "holding them (a run, an evaluation or an ablation folder: every such file below).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: FILE.jsonl, FILE.parquet, or a folder (a Hugging "
                                                          "Face dataset, datasets.load_from_disk).")],
    format_: Annotated[ExportFormat | None, typer.Option("--format", help="jsonl, parquet or dataset (default: from "
                                                                     "--out's suffix; none: dataset).")] = None,
    only_success: Annotated[bool, typer.Option("--only-success", help="Keep only successful episodes (for SFT on "
                                                                      "good behaviour).")] = False,
    include_failures: Annotated[bool, typer.Option(help="Also keep episodes whose environment broke (status "
                                                        "env_failure; left out by default).")] = False,
    system_prompt: Annotated[Path | None, typer.Option(help="A text file whose content replaces simrl's policy "
                                                            "system prompt as the first message.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows (the first, in file order).", min=1)] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Write trajectories as chat data, SFT-ready for TRL: one row per episode with `messages` (system, the task,
    assistant tool_calls with JSON-string arguments, tool messages with tool_call_id, the final answer), `tools`
    (the tool schemas as a JSON string) and the episode's task, environment, status and reward.

    Example: simrl export runs/qs --only-success --out runs/qs-sft.jsonl
    """
    from simrl.errors import SimrlError
    from simrl.export import collect, format_of, write_rows
    from simrl.policies.openai_policy import DEFAULT_SYSTEM_PROMPT

    fmt = format_of(out, format_)
    if out.exists() and not force:
        raise SimrlError(f"--out {out} exists; choose another path or pass --force to replace it")
    prompt = system_prompt.read_text(encoding="utf-8") if system_prompt is not None else DEFAULT_SYSTEM_PROMPT
    rows, skipped = collect(trajectories, only_success=only_success, include_failures=include_failures,
                            system_prompt=prompt, limit=limit)
    if not rows:
        raise SimrlError(f"no trajectories left to export ({_why(skipped) or 'the inputs are empty'})")
    write_rows(rows, out, fmt)
    success = sum(r["status"] == "success" for r in rows)
    typer.echo(f"{len(rows)} episode(s) ({success} successful) -> {out} ({fmt})"
               + (f"; skipped: {_why(skipped)}" if skipped else ""))


def _why(skipped) -> str:
    """What was skipped, grouped by reason (torn records counted together)."""
    torn = sum(n for k, n in skipped.items() if k.startswith("torn record"))
    rest = [f"{n} {k}" for k, n in skipped.items() if not k.startswith("torn record")]
    return ", ".join(rest + ([f"{torn} torn record(s)"] if torn else []))
