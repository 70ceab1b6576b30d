"""AgentWorldBench JSONL: read one row as a :class:`~simrl.wm.transitions.Transition`, write transitions as rows.

Format (QwenLM/Qwen-AgentWorld README "Data Format" and ``eval/eval.py``; docs/design.md §4): one JSON
object per evaluated turn, per-domain files ``<domain>_test.jsonl``:

==================  ==============================================================================
``task``            the domain (``mcp``, ``search``, ...; ``eval.py`` takes the part after the last
                    ``/`` and reads a missing field as ``mcp``)
``id``              the sample id (an integer)
``system_str``      the world model's system prompt of this sample
``prompt``          every turn's action message (``### Turn N`` / ``**Action:**`` / json block)
``response``        every turn's real observation, ``**Environment Observation:**`` then the output
``current_prompt``  the action of the evaluated turn (``eval.py`` falls back to ``prompt[turn_idx-1]``)
``turn_idx``        1-based index of the evaluated turn (missing: 1, as ``eval.py`` reads it)
``total_turns``     turns of the trajectory
==================  ==============================================================================

There is no separate gold field: the gold is ``response[turn_idx - 1]`` without the marker
(``build_judge_messages`` / ``clean_response_marker`` in ``eval.py``). Rows written here add a
``simrl`` object (``env_id``, ``task_id``, ``trajectory``, ``tools``, ``real_is_error``,
``perturbation``) that the reader uses when present; other readers ignore it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simrl.errors import SimrlError
from simrl.wm import prompts
from simrl.wm.transitions import HistoryTurn, Transition, parse_action


def clean_observation(text: str) -> str:
    """An AgentWorldBench response without its ``**Environment Observation:**`` marker."""
    marker = prompts.OBSERVATION_HEADER
    if text.startswith(marker):
        rest = text[len(marker):]
        return rest[1:] if rest.startswith("\n") else rest.lstrip()
    return text.replace(marker, "").strip()


def from_row(row: dict[str, Any], where: str, key: str, domain: str | None = None) -> Transition:
    """The transition of one AgentWorldBench row.

    Args:
        row: the parsed JSON object.
        where: ``file:line``, for error messages.
        key: the episode key to use when the row has no ``simrl.trajectory``.
        domain: force this domain (default: the row's ``task``).

    Raises:
        SimrlError: a missing or ill-typed field, ``turn_idx`` outside ``1..len(response)``, no action.
    """

    def texts(field: str) -> list[str]:
        value = row.get(field)
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SimrlError(f"{where}: AgentWorldBench field {field!r} must be a list of strings")
        return value

    if not isinstance(row.get("system_str"), str):
        raise SimrlError(f"{where}: AgentWorldBench field 'system_str' (the world model's system prompt) is "
                         "missing or not a string")
    prompt, response = texts("prompt"), texts("response")
    idx = row.get("turn_idx", 1)  # eval.py reads a missing turn_idx as 1
    if not isinstance(idx, int) or isinstance(idx, bool) or not 1 <= idx <= len(response):
        raise SimrlError(f"{where}: AgentWorldBench field 'turn_idx' must be an integer from 1 to "
                         f"len(response) = {len(response)} (1-based; the gold is response[turn_idx - 1]), got {idx!r}")
    current = row.get("current_prompt") or (prompt[idx - 1] if idx <= len(prompt) else "")
    if not isinstance(current, str) or not current:
        raise SimrlError(f"{where}: no action for turn {idx}: 'current_prompt' is empty and prompt has "
                         f"{len(prompt)} entries")
    if len(prompt) < idx - 1:
        raise SimrlError(f"{where}: prompt has {len(prompt)} entries, fewer than the {idx - 1} earlier turns")
    meta = row.get("simrl") if isinstance(row.get("simrl"), dict) else {}
    total = row.get("total_turns", len(prompt))
    history = [HistoryTurn(action_text=a, observation=clean_observation(o), **dict(zip(("name", "arguments"),
                                                                                      parse_action(a))))
               for a, o in zip(prompt[:idx - 1], response[:idx - 1])]
    name, arguments = parse_action(current)
    task = str(row.get("task") or "mcp")
    key = meta.get("trajectory") or key
    try:
        return Transition(domain=(domain or task.rsplit("/", 1)[-1]).lower(), env_id=meta.get("env_id"),
                          task_id=meta.get("task_id"), trajectory=str(key), turn_idx=idx - 1,
                          total_turns=max(int(total) if isinstance(total, int) else len(prompt), idx),
                          system=row["system_str"], tools=meta.get("tools") or [], history=history,
                          action_text=current, action_name=name, action_arguments=arguments,
                          observation=clean_observation(response[idx - 1]),
                          real_is_error=meta.get("real_is_error"), perturbation=meta.get("perturbation"))
    except ValidationError as err:
        e = err.errors()[0]
        raise SimrlError(f"{where}: bad simrl metadata: {'.'.join(map(str, e['loc']))}: {e['msg']}") from None


def agentworldbench_row(t: Transition, prompt: list[str] | None = None, response: list[str] | None = None) -> dict:
    """One AgentWorldBench row for ``t``: ``prompt`` / ``response`` default to its history and itself."""
    prompt = prompt or [h.action_text for h in t.history] + [t.action_text]
    response = response or [prompts.observation_message(h.observation) for h in t.history] + \
        [prompts.observation_message(t.observation)]
    digest = hashlib.sha256(f"{t.trajectory}:{t.turn_idx}".encode()).hexdigest()
    return {"task": t.domain, "id": int(digest[:13], 16), "prompt": prompt, "response": response,
            "current_prompt": t.action_text, "system_str": t.system, "turn_idx": t.turn_idx + 1,
            "total_turns": t.total_turns,
            "simrl": {"env_id": t.env_id, "task_id": t.task_id, "trajectory": t.trajectory, "tools": t.tools,
                      "real_is_error": t.real_is_error, "perturbation": t.perturbation}}


def write_rows(transitions: Iterable[Transition], path: str | Path) -> int:
    """Write AgentWorldBench-format JSONL, one row per transition; returns the number of rows.

    Each row's ``prompt`` / ``response`` list every turn of its episode that is among
    ``transitions`` (the benchmark's rows carry the whole trajectory), so later turns of the same
    episode appear after ``turn_idx``.
    """
    items = list(transitions)
    full: dict[str, Transition] = {}
    for t in items:
        if t.trajectory not in full or t.turn_idx > full[t.trajectory].turn_idx:
            full[t.trajectory] = t
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for t in items:
            last = full[t.trajectory]
            prompt = [h.action_text for h in last.history] + [last.action_text]
            response = [prompts.observation_message(h.observation) for h in last.history] + \
                [prompts.observation_message(last.observation)]
            if prompt[:t.turn_idx + 1] != [h.action_text for h in t.history] + [t.action_text]:
                prompt = response = None  # not a prefix of the same episode: this turn's own lists
            f.write(json.dumps(agentworldbench_row(t, prompt, response), ensure_ascii=False) + "\n")
    return len(items)
