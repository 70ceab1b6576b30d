"""World-model training data from real transitions: chat rows, with control-instruction variants.

Each row is one real transition (:class:`~simrl.wm.transitions.Transition`) as an OpenAI-format
chat: ``messages`` = the world model's input (``[system, user, assistant, ..., user]``, the layout
of :func:`simrl.wm.prompts.build_messages`) plus the target, a final **assistant** message with the
real observation wrapped the way the world model must answer
(``<think>\\n\\n</think>\\n\\n<predicted_observation>\\n...\\n</predicted_observation>``; the empty think
is optional), so that :func:`simrl.wm.prompts.parse_prediction` of the target is the observation.
The input of the continual-pretraining / SFT stages that build a world model.

**Perturbed variants** (``perturb = N``): N transitions, drawn with a ``random.Random(seed)``, get
one extra row each: a perturbation that fits the call (from the schedule's types, with their
parameters and targets - tools, environment ids, turn window - or, without a schedule, every
recoverable type of the taxonomy) is applied to the real observation in code
(:meth:`~simrl.perturb.taxonomy.Perturbation.apply`) to make the target, and its control instruction
(:meth:`~simrl.perturb.taxonomy.Perturbation.control_instruction`) goes into the last user message
as :meth:`Transition.messages(control=...) <simrl.wm.transitions.Transition.messages>` puts it. A
variant is kept only if the target complies (:meth:`~simrl.perturb.taxonomy.Perturbation.complies`):
the pair teaches the world model to follow control instructions. Schedule *rates* are not used: N
sets how many variants there are.

Calls that a schedule already perturbed in the recorded episode (``Transition.perturbation``) are
not targets (their observation is not the environment's own), but stay in later turns' history.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.perturb.schedule import Schedule
from simrl.perturb.taxonomy import EpisodeState, Perturbation, PerturbContext, all_classes
from simrl.types import ToolResult
from simrl.wm.transitions import Transition

FORMATS = ("jsonl", "parquet", "agentworldbench")
COLUMNS = ("messages", "domain", "env_id", "task_id", "trajectory", "turn_idx", "perturbation",
           "control_instruction")
"""Row fields, in order: the chat, then the metadata columns."""


def target_message(observation: str, think: bool = True) -> dict[str, str]:
    """The assistant message a world model must produce for ``observation``.

    >>> target_message("ok", think=False)["content"]
    '<predicted_observation>\\nok\\n</predicted_observation>'
    """
    body = f"<predicted_observation>\n{observation}\n</predicted_observation>"
    return {"role": "assistant", "content": ("<think>\n\n</think>\n\n" if think else "") + body}


def row(t: Transition, *, think: bool = True, observation: str | None = None, control: str | None = None,
        perturbation: str | None = None) -> dict[str, Any]:
    """One training row: the chat (input + target) and the metadata columns of :data:`COLUMNS`."""
    target = t.observation if observation is None else observation
    return {"messages": [*t.messages(control=control), target_message(target, think)], "domain": t.domain,
            "env_id": t.env_id, "task_id": t.task_id, "trajectory": t.trajectory, "turn_idx": t.turn_idx,
            "perturbation": perturbation, "control_instruction": control}


def _candidates(t: Transition, schedule: Schedule | None) -> list[Perturbation]:
    """The perturbations that may target ``t``'s call: the schedule's in-scope types, else every recoverable type."""
    if schedule is None:
        return [cls() for cls in all_classes() if cls.recoverable]
    env = t.env_id or t.domain
    return [schedule.perturbation(kind) for kind, entry in schedule.perturbations.items()
            if entry.targets(t.action_name or "", env, t.turn_idx)]


def variant_context(t: Transition, kind: str, seed: int) -> PerturbContext:
    """The context of a variant of ``t`` with perturbation ``kind`` (its details seeded by sha256 of
    ``seed``, the episode key, the turn and the type); ``complies`` checks a target against it.

    Raises:
        SimrlError: ``t``'s action could not be parsed into a tool call.
    """
    call = t.call()
    if call is None:
        raise SimrlError(f"{t.trajectory} turn {t.turn_idx}: the action is not a parsable tool call")
    schemas = {tool.get("function", {}).get("name"): tool.get("function") for tool in t.tools}
    return PerturbContext(call=call, turn=t.turn_idx, key=f"{seed}:{t.trajectory}:{t.turn_idx}:{kind}",
                          tool_schema=schemas.get(call.name), env_id=t.env_id or t.domain, state=EpisodeState())


def pick_variant(t: Transition, rng: random.Random, schedule: Schedule | None,
                 seed: int) -> tuple[Perturbation, str, str] | None:
    """A perturbation that fits ``t``'s call and changes its observation, in a way its own check accepts:
    ``(perturbation, control instruction, perturbed observation)``, or None.

    Candidates are tried in ``rng`` order; details are seeded by :func:`variant_context`.
    """
    call = t.call()
    if call is None:
        return None
    options = _candidates(t, schedule)
    rng.shuffle(options)
    for p in options:
        ctx = variant_context(t, p.kind.value, seed)
        if not p.fits(call, ctx):
            continue
        real = ToolResult(name=call.name, content=t.observation, is_error=bool(t.real_is_error))
        out = p.apply(call, None if p.phase == "before" else real, ctx)
        if out is None or out.content == t.observation:
            continue
        instruction = p.control_instruction(ctx)
        if p.complies(out.content, ctx):
            return p, instruction, out.content
    return None


def perturbed_row(t: Transition, rng: random.Random, schedule: Schedule | None, seed: int,
                  think: bool = True) -> dict[str, Any] | None:
    """A control-instruction variant of ``t`` (:func:`pick_variant`: a fitting perturbation, its complying
    target) as a training row, or None."""
    picked = pick_variant(t, rng, schedule, seed)
    if picked is None:
        return None
    p, instruction, target = picked
    return row(t, think=think, observation=target, control=instruction, perturbation=p.kind.value)


def build_rows(transitions: list[Transition], *, perturb: int = 0, schedule: Schedule | None = None,
               seed: int = 0, think: bool = True) -> tuple[list[dict[str, Any]], Counter]:
    """The training rows of ``transitions``: one clean row each, then up to ``perturb`` variants.

    Returns:
        ``(rows, notes)``; ``notes`` counts ``skipped_perturbed_in_trajectory`` (calls a schedule
        changed when recorded), ``variants_wanted`` and ``variants_unavailable`` (fewer transitions
        had a fitting perturbation than asked).

    Raises:
        SimrlError: ``perturb`` < 0.
    """
    if perturb < 0:
        raise SimrlError(f"--perturb must be >= 0, got {perturb}")
    notes: Counter = Counter()
    clean = [t for t in transitions if t.perturbation is None]
    notes["skipped_perturbed_in_trajectory"] = len(transitions) - len(clean)
    rows = [row(t, think=think) for t in clean]
    rng = random.Random(seed)
    order = list(range(len(clean)))
    rng.shuffle(order)
    variants: list[tuple[int, dict[str, Any]]] = []
    for i in order:
        if len(variants) >= perturb:
            break
        made = perturbed_row(clean[i], rng, schedule, seed, think)
        if made is not None:
            variants.append((i, made))
    notes["variants_wanted"] = perturb
    notes["variants_unavailable"] = perturb - len(variants)
    return rows + [r for _, r in sorted(variants, key=lambda v: v[0])], notes


def parse_formats(text: str) -> list[str]:
    """``"jsonl,parquet"`` -> ``["jsonl", "parquet"]``.

    Raises:
        SimrlError: an unknown or empty format list.
    """
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise SimrlError(f"--format takes a comma-separated list of {', '.join(FORMATS)}; got {text!r}")
    return list(dict.fromkeys(formats))


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    """One JSON object per row (keys in :data:`COLUMNS` order)."""
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in COLUMNS}, ensure_ascii=False) + "\n")


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """A Parquet table (pyarrow): ``messages`` as list<struct<role, content>>, the metadata as columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema([("messages", pa.list_(message)), ("domain", pa.string()), ("env_id", pa.string()),
                        ("task_id", pa.string()), ("trajectory", pa.string()), ("turn_idx", pa.int64()),
                        ("perturbation", pa.string()), ("control_instruction", pa.string())])
    pq.write_table(pa.Table.from_pylist([{k: r[k] for k in COLUMNS} for r in rows], schema=schema), path)


def write_benchmark(transitions: list[Transition], out: Path) -> list[str]:
    """Write the REAL transitions (no perturbed variants) as AgentWorldBench files, one per domain:
    ``out/agentworldbench/<domain>_test.jsonl``, the file names the benchmark's ``eval/eval.py`` reads
    (QwenLM/Qwen-AgentWorld); returns the files written, relative to ``out``."""
    from simrl.wm.agentworldbench import write_rows

    by_domain: dict[str, list[Transition]] = {}
    for t in transitions:
        by_domain.setdefault(t.domain, []).append(t)
    names = []
    for domain, items in sorted(by_domain.items()):
        name = f"agentworldbench/{domain}_test.jsonl"
        write_rows(items, out / name)
        names.append(name)
    return names


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(inputs: list[Path], out: Path, *, world: Path | None = None, perturb: int = 0,
           schedule: str | None = None, seed: int = 0, formats: tuple[str, ...] = FORMATS,
           think: bool = True, tools: str = "all") -> dict[str, Any]:
    """Read ``inputs``, build the rows, write ``out/train.{jsonl,parquet}`` and ``out/manifest.json``.

    Args:
        inputs: simrl trajectory or AgentWorldBench JSONL files (:func:`~simrl.wm.transitions.load_transitions`).
        out: the output folder (created).
        world: the world of the trajectories (its facts go into the system prompt).
        perturb: how many control-instruction variants to add.
        schedule: a schedule YAML path or shipped name choosing the variants' types (default: all recoverable).
        seed: seed of the variant draws.
        formats: ``jsonl``, ``parquet`` (the chat rows) and/or ``agentworldbench`` (the real transitions as
            AgentWorldBench files, :func:`write_benchmark`).
        think: put an empty ``<think>`` block before the target's prediction block.
        tools: ``all`` (the system prompt lists the episode's tools) or ``called`` (only the tools called so
            far, this call included: :func:`simrl.wm.transitions.called_tools_system`, the prompt
            ``simrl wm eval --wm-tools called`` shows; for small-context models).

    Returns:
        The manifest (also written): inputs with their sha256 and transition counts, the options,
        ``counts`` (rows, clean, perturbed, by domain, by perturbation type, skipped), the simrl version.

    Raises:
        SimrlError / SpecError: a missing or malformed input or schedule, or no transitions at all.
    """
    from simrl import __version__
    from simrl.perturb.schedule import load_schedule
    from simrl.wm.transitions import load_transitions

    sched = load_schedule(schedule) if schedule else None
    transitions, sources, skipped = [], [], Counter()
    for path in inputs:
        if not Path(path).exists():
            raise SimrlError(f"--trajectories {path}: no such file (record one with `simrl rollout`)")
        found = load_transitions(path, world=world, skipped=skipped)
        transitions += found
        sources.append({"path": str(path), "sha256": sha256(Path(path)) if Path(path).is_file() else None,
                        "transitions": len(found)})
    if not transitions:
        raise SimrlError("no transitions in " + ", ".join(map(str, inputs)) + ": the files hold no tool calls with "
                         "real observations (trajectories of `simrl rollout` with real tools, or AgentWorldBench rows)")
    if tools not in ("all", "called"):
        raise SimrlError(f"--wm-tools takes all or called, got {tools!r}")
    if tools == "called":
        from simrl.wm.transitions import called_tools_system

        transitions = [t.model_copy(update={"system": called_tools_system(t, world)}) for t in transitions]
    rows, notes = build_rows(transitions, perturb=perturb, schedule=sched, seed=seed, think=think)
    out.mkdir(parents=True, exist_ok=True)
    if "jsonl" in formats:
        write_jsonl(rows, out / "train.jsonl")
    if "parquet" in formats:
        write_parquet(rows, out / "train.parquet")
    benchmark = write_benchmark(transitions, out) if "agentworldbench" in formats else []
    counts = {"rows": len(rows), "clean": sum(r["perturbation"] is None for r in rows),
              "perturbed": sum(r["perturbation"] is not None for r in rows),
              "by_domain": dict(sorted(Counter(r["domain"] for r in rows if r["perturbation"] is None).items())),
              "perturbed_by_domain": dict(sorted(Counter(r["domain"] for r in rows if r["perturbation"]).items())),
              "by_perturbation": dict(sorted(Counter(r["perturbation"] for r in rows if r["perturbation"]).items())),
              "skipped": dict(sorted(skipped.items())) | {k: v for k, v in notes.items() if k.startswith("skipped")},
              "variants_unavailable": notes["variants_unavailable"]}
    manifest = {"inputs": sources, "world": str(world) if world else None, "seed": seed, "perturb": perturb,
                "schedule": sched.name if sched else None, "formats": [f for f in FORMATS if f in formats],
                "think": think, "tools": tools, "files": [f"train.{f}" for f in FORMATS if f in formats and f != "agentworldbench"] + benchmark,
                "counts": counts,
                "simrl_version": __version__}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest
