"""The verl reward function: simrl's task reward of a finished trajectory.

verl 0.9.1 loads it by file path (``reward.custom_reward_function.path`` = :data:`REWARD_PATH`,
``name`` = ``compute_score``) in its reward-loop workers, possibly in another process or node than the
rollout, and calls ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`` once per
trajectory (``verl.experimental.reward_loop.reward_manager.naive.NaiveRewardManager.run_single``):

* ``solution_str``: the decoded response (``skip_special_tokens=True``): every assistant turn AND the
  tool observations between them;
* ``ground_truth``: the row's ``reward_model.ground_truth``, here the task as JSON
  (:func:`simrl.trainers.verl.data.task_row`; gold and evidence, never shown to the policy);
* ``extra_info``: the row's ``extra_info`` updated with the trajectory's extra fields, among them
  ``extras.simrl`` left by the tools (:data:`simrl.trainers.verl.sessions.EXTRAS`).

The reward is :mod:`simrl.reward.task`'s: ``qa`` / records reads by exact match of the final answer,
``table`` by WideSearch item F1, records writes by the final record state (read by the tools after
each call, since only the environment holds the records: ``extras.simrl.state``). The final answer
is the policy's last text without a tool call: the text after the last tool observation
(:func:`final_answer`). The result is a dict with the same keys for every trajectory (verl stacks
them into columns): ``score`` (the reward) plus metrics (weight 0).

Importing this file imports no verl and nothing heavy.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

REWARD_PATH = str(Path(__file__).resolve())
"""Absolute path of this file (``reward.custom_reward_function.path``)."""

REWARD_NAME = "compute_score"
"""The function's name (``reward.custom_reward_function.name``)."""

SCORE_KEYS = ("score", "success", "answered", "env_failure", "tool_calls", "perturbations")
"""Keys of :func:`compute_score`'s result (all floats)."""

_CHAT_MARKS = re.compile(r"<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>")
_ROLE_HEADER = re.compile(r"^(?:assistant|user)[ \t]*\n")
_TOOL_END = "</tool_response>"


@functools.lru_cache(maxsize=4096)
def _task(ground_truth: str) -> Any:
    from simrl.world.schema import Task

    return Task.model_validate_json(ground_truth)


def final_answer(solution_str: str, last_observation_tail: str | None = None) -> str:
    """The policy's final answer in a decoded multi-turn response: the text after the last tool observation.

    The end of the last observation is the last ``</tool_response>`` (the Qwen templates; kept by
    ``skip_special_tokens`` when the tokenizer does not mark it special), else the last occurrence of
    ``last_observation_tail`` (the tools record it). Chat markers and the assistant's role header are
    dropped. A last turn that is itself a tool call (cut by the turn limit) is no answer: ``""``.

    >>> final_answer("<tool_call>{}</tool_call>user\\n<tool_response>\\n[x]\\n</tool_response>\\nassistant\\n"
    ...              "<answer>Port Ellen</answer>")
    '<answer>Port Ellen</answer>'
    >>> final_answer("hits: Port Ellen\\n\\nassistant\\nIt is <answer>Oban</answer>", "hits: Port Ellen")
    'It is <answer>Oban</answer>'
    >>> final_answer("<answer>Oban</answer>")
    '<answer>Oban</answer>'
    """
    text = str(solution_str or "")
    cut = text.rfind(_TOOL_END)
    start = cut + len(_TOOL_END) if cut >= 0 else 0
    if cut < 0 and last_observation_tail:
        k = text.rfind(last_observation_tail)
        if k >= 0:
            start = k + len(last_observation_tail)
    rest = _CHAT_MARKS.sub("\n", text[start:]).strip()
    rest = _ROLE_HEADER.sub("", rest, count=1).strip()
    return "" if "<tool_call>" in rest else rest


def _simrl_extras(extra_info: Any) -> dict[str, Any]:
    extras = (extra_info or {}).get("extras") if hasattr(extra_info or {}, "get") else None
    found = extras.get("simrl") if hasattr(extras, "get") else None
    return dict(found) if hasattr(found, "keys") else {}


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None,
                  **kwargs: Any) -> dict[str, float]:
    """simrl's task reward of one trajectory (verl's custom reward function; see the module docstring).

    Args:
        data_source: the row's ``data_source`` (``simrl:<env>:<type>``; not needed to score).
        solution_str: the decoded response (all turns).
        ground_truth: the task as JSON (:class:`simrl.world.schema.Task`).
        extra_info: the row's extra info plus the trajectory's extra fields (``extras.simrl``).
        **kwargs: further keywords verl may pass (``reward_router_address``, ...), unused.

    Returns:
        ``{"score": reward in [0, 1], "success", "answered", "env_failure", "tool_calls",
        "perturbations"}``, all floats: the reward, then metrics.

    Raises:
        pydantic.ValidationError: ``ground_truth`` is not a simrl task (data not written by simrl).
    """
    from simrl.reward.task import score_answer

    task = _task(str(ground_truth))
    extras = _simrl_extras(extra_info)
    answer = final_answer(solution_str, extras.get("last_observation_tail"))
    if getattr(task.gold, "kind", None) == "write":
        state = extras.get("state") or {}  # no call, no change: nothing of the final state holds
        reward, success = float(state.get("reward", 0.0)), bool(state.get("success", False))
    else:
        scored = score_answer(task, answer)
        reward, success = scored.reward, scored.success
    return {"score": float(reward), "success": float(success), "answered": float(bool(answer)),
            "env_failure": float(bool(extras.get("env_failure"))), "tool_calls": float(extras.get("tool_calls") or 0),
            "perturbations": float(len(extras.get("perturbations") or []))}
