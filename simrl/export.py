"""Trajectories as chat data: OpenAI tool-call ``messages`` rows, JSONL / Parquet / a Hugging Face dataset.

A row per trajectory (``simrl export``; the input of TRL's ``SFTTrainer`` and any OpenAI-format tool):

* ``messages``: the system prompt (simrl's policy prompt unless another is given), the task prompt as
  the user turn, then per turn the assistant message with ``tool_calls`` (``{"id", "type": "function",
  "function": {"name", "arguments"}}``, ``arguments`` a JSON string as the OpenAI chat API writes it) and
  one ``tool`` message per call with its ``tool_call_id``; the final answer is the last assistant message.
  This is the layout the policies send (:func:`simrl.policies.openai_policy.chat_messages`), so the data
  shows a model exactly what a simrl policy sees;
* ``tools``: the environment's tool schemas (OpenAI function format) as a JSON string, the form TRL's
  ``SFTTrainer`` accepts (``json.loads`` of a string ``tools`` column) and that keeps one Arrow schema
  for every row whatever the tools' parameters;
* ``task_id``, ``env_id``, ``backend``, ``status``, ``reward``, ``turns``, ``source`` (``FILE:LINE``).

Nothing hidden is exported: a trajectory holds what the policy saw (the task's policy view, the
observations) and did; its ``info`` (scores, perturbations met) stays out of the messages.

Inputs are trajectory JSONL files as ``simrl rollout``, ``simrl eval --out`` (``eval_trajectories.jsonl``)
and training runs (``RUN/trajectories.jsonl``) write them; a folder stands for every such file in it and
below. A torn last record (a writer killed mid-line) is skipped and counted, as every reader of
trajectories does.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simrl.choices import ExportFormat, values
from simrl.errors import SimrlError
from simrl.policies.openai_policy import DEFAULT_SYSTEM_PROMPT, chat_messages
from simrl.rollout import jsonl_objects
from simrl.types import Trajectory

TRAJECTORY_FILES = ("trajectories.jsonl", "eval_trajectories.jsonl")
"""The trajectory files a folder is searched for (training runs; ``simrl eval --out``)."""
FORMATS = values(ExportFormat)
"""Output formats (:data:`simrl.choices.ExportFormat`)."""


def trajectory_files(path: str | Path) -> list[Path]:
    """``path`` itself (a file), or every :data:`TRAJECTORY_FILES` file in the folder and below, sorted.

    Raises:
        SimrlError: no such file or folder, or a folder without trajectory files.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise SimrlError(f"{p}: no such file or folder; give a trajectories JSONL file (simrl rollout --out, "
                         "RUN/trajectories.jsonl, eval_trajectories.jsonl) or a folder holding them")
    found = sorted(f for name in TRAJECTORY_FILES for f in p.rglob(name))
    if not found:
        raise SimrlError(f"{p}: no {' or '.join(TRAJECTORY_FILES)} in this folder or below")
    return found


def read_trajectories(path: Path, skipped: Counter) -> Iterator[tuple[str, Trajectory]]:
    """``(FILE:LINE, trajectory)`` for each record of a trajectories JSONL file, read line by line.

    A torn record (a line that starts like an object but is not JSON: a writer killed mid-line) is skipped
    and counted in ``skipped``.

    Raises:
        SimrlError: a line that is neither JSON nor torn, or JSON that is not a simrl trajectory (the
            message names the file, line and field).
    """
    for lineno, row in jsonl_objects(path, skipped, torn="torn record", expected="one trajectory per line"):
        try:
            yield f"{path}:{lineno}", Trajectory.model_validate(row)
        except ValidationError as err:
            e = err.errors()[0]
            where = ".".join(str(x) for x in e["loc"])
            raise SimrlError(f"{path}:{lineno}: not a simrl trajectory (from simrl rollout / eval / train): "
                             f"{where}: {e['msg']}") from None


def chat_row(traj: Trajectory, system_prompt: str = DEFAULT_SYSTEM_PROMPT, source: str = "") -> dict[str, Any]:
    """One trajectory as an export row (see the module docstring for the columns)."""
    return {"messages": chat_messages(system_prompt, traj.initial, traj.turns),
            "tools": json.dumps(traj.initial.tools, ensure_ascii=False), "task_id": traj.task_id,
            "env_id": traj.env_id, "backend": traj.backend, "status": traj.status, "reward": float(traj.reward),
            "turns": len(traj.turns), "source": source}


def collect(paths: list[Path], *, only_success: bool = False, include_failures: bool = False,
            system_prompt: str = DEFAULT_SYSTEM_PROMPT, limit: int | None = None) -> tuple[list[dict], Counter]:
    """Export rows of every trajectory in ``paths`` (files or folders), and what was skipped, by reason.

    Args:
        only_success: keep only ``success`` trajectories.
        include_failures: keep ``env_failure`` trajectories too (left out by default: the environment
            broke, so they show no behaviour to learn from).
        limit: at most this many rows (the first ones, in file order).
    """
    rows: list[dict] = []
    skipped: Counter = Counter()
    for path in (f for p in paths for f in trajectory_files(p)):
        for source, traj in read_trajectories(path, skipped):
            if only_success and traj.status != "success":
                skipped[f"status {traj.status} (--only-success)"] += 1
            elif traj.status == "env_failure" and not include_failures:
                skipped["status env_failure (the environment broke)"] += 1
            elif limit is not None and len(rows) >= limit:
                skipped["over --limit"] += 1
            else:
                rows.append(chat_row(traj, system_prompt, source))
    return rows, skipped


def format_of(out: Path, fmt: str | None) -> ExportFormat:
    """The output format: ``fmt``, else from ``out``'s suffix (``.jsonl``, ``.parquet``; no suffix: a dataset folder).

    Raises:
        SimrlError: an unknown format, or a suffix that names none.
    """
    if fmt is None:
        fmt = {".jsonl": "jsonl", ".parquet": "parquet", "": "dataset"}.get(out.suffix)
        if fmt is None:
            raise SimrlError(f"--out {out}: end it in .jsonl or .parquet, give a folder name, or set --format "
                             f"({', '.join(FORMATS)})")
    if fmt not in FORMATS:
        raise SimrlError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt  # type: ignore[return-value]


def write_rows(rows: list[dict], out: Path, fmt: ExportFormat) -> None:
    """Write ``rows`` to ``out`` as ``fmt``, replacing it as a whole (a temporary sibling, then renamed).

    Raises:
        SimrlError: ``parquet`` / ``dataset`` without the ``datasets`` package.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if fmt == "jsonl":
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        try:
            import datasets
            from datasets import Dataset
        except ImportError:
            raise SimrlError(f"--format {fmt} needs the datasets package: pip install datasets (or simrl[trl]); "
                             "--format jsonl needs nothing") from None
        datasets.disable_progress_bars()
        data = Dataset.from_list(rows)
        if fmt == "parquet":
            data.to_parquet(str(tmp))
        else:
            data.save_to_disk(str(tmp))
    if out.is_dir() and fmt == "dataset":
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)


def transcript(traj: Trajectory, max_chars: int = 300) -> str:
    """A trajectory as a short readable transcript (``simrl eval --samples``): the task, each call and its
    result, the final answer, each text cut at ``max_chars`` characters."""
    def cut(text: Any) -> str:
        text = " ".join(str(text or "").split())
        return text if len(text) <= max_chars else text[:max_chars - 1] + "…"

    lines = [f"task {traj.task_id} ({traj.env_id}, {traj.backend}): {traj.status}, reward {traj.reward:.2f}, "
             f"{len(traj.turns)} turn(s)", f"  user: {cut(traj.initial.text)}"]
    for message in chat_messages("", traj.initial, traj.turns)[2:]:
        if message["role"] == "assistant" and message.get("tool_calls"):
            for call in message["tool_calls"]:
                lines.append(f"  call: {call['function']['name']}({cut(call['function']['arguments'])})")
        else:
            lines.append(f"  {message['role']}: {cut(message.get('content'))}")
    return "\n".join(lines)


def samples(folder: Path, n: int) -> list[Trajectory]:
    """The first ``n`` episodes of the evaluation written under ``folder`` (every ``eval_trajectories.jsonl``
    below it, each in episode-seed order: the first trial of the first tasks), for ``simrl eval --samples``."""
    if n <= 0:
        return []
    found = sorted(Path(folder).rglob(TRAJECTORY_FILES[1]))
    picked: list[Trajectory] = []
    for path in found:
        picked += sorted((t for _, t in read_trajectories(path, Counter())), key=lambda t: t.seed)
    return picked[:n]
