"""Credit assignment for the embedded trainer: episode-level (GRPO) and step-level (GiGPO) advantages.

* :func:`group_advantages`: GRPO's group-relative advantage of each episode (Shao et al., 2024, DeepSeekMath
  §4.1): ``A_i = (r_i - mean_group) / (std_group + 1e-6)``; every turn of episode i gets ``A_i``.
* :func:`step_advantages`: GiGPO's step-level advantage (Feng et al., NeurIPS 2025, "Group-in-Group Policy
  Optimization for LLM Agent Training", arXiv:2505.10978, §3.2): the turns of a group's episodes that start
  from the same environment state (an *anchor state*: the same prompt, tools and history of actions and
  observations, :attr:`simrl.policies.decisions.Decision.key`) form a step group; each turn's discounted
  return ``R_t = sum_k gamma^(k - t) r_k`` is compared within its step group, ``(R_t - mean) / (std + 1e-6)``.
  A turn whose state no other turn of the group shares gets 0 (nothing to compare with).
* :func:`turn_advantages`: the advantage of each turn, ``A_i + weight * A_step_it`` (GiGPO's combination,
  with its ``omega`` as ``weight``), or ``A_i`` alone for ``credit: episode``.

With episode credit, one turn that followed a cursor or retried after a 503 gets the same credit as every
other turn of its episode; with step credit, it is compared with the turns that took another action from the
same state in the same group, and only the difference in outcome from there on counts.

``std`` is the sample standard deviation (n - 1) at both levels, as in trl's and verl's GRPO.
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Sequence


def _normalised(values: Sequence[float]) -> list[float]:
    """``(v - mean) / (std + 1e-6)``; all 0 for fewer than two values or equal values."""
    if len(values) < 2 or max(values) == min(values):
        return [0.0] * len(values)
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return [(v - mean) / (std + 1e-6) for v in values]


def group_advantages(rewards: list[float], valid: list[bool]) -> list[float]:
    """GRPO's group-relative advantages (Shao et al., 2024): ``(r - mean) / (std + 1e-6)`` over the valid episodes.

    Invalid episodes (environment failures) get 0 and do not enter the mean or std; a group with fewer than
    two valid episodes, or with equal rewards, gives every episode 0 (nothing to compare).

    >>> [round(a, 4) for a in group_advantages([1.0, 0.0, 1.0, 0.0], [True] * 4)]  # mean .5, std sqrt(1/3)
    [0.866, -0.866, 0.866, -0.866]
    >>> [round(a, 3) for a in group_advantages([1.0, 0.0, 0.0, 5.0], [True, True, True, False])]  # 5.0 failed
    [1.155, -0.577, -0.577, 0.0]
    >>> group_advantages([1.0, 1.0, 1.0], [True] * 3)
    [0.0, 0.0, 0.0]
    """
    kept = iter(_normalised([r for r, ok in zip(rewards, valid) if ok]))
    return [next(kept) if ok else 0.0 for ok in valid]


def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """``R_t = sum_{k >= t} gamma^(k - t) r_k`` of one episode's per-turn rewards.

    >>> discounted_returns([0.0, 0.0, 1.0], 0.5)
    [0.25, 0.5, 1.0]
    """
    out, running = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def step_advantages(keys: Sequence[Sequence[Hashable]], rewards: Sequence[Sequence[float]], valid: Sequence[bool],
                    gamma: float) -> list[list[float]]:
    """GiGPO's step-level advantages of one group (Feng et al., 2025, §3.2).

    Args:
        keys: per episode, the anchor-state key of each turn (the state the turn acted from).
        rewards: per episode, the reward of each turn (0 until the final answer's).
        valid: per episode, False for an environment failure (its turns get 0 and join no step group).
        gamma: discount of the returns, in (0, 1].

    Returns:
        per episode, one advantage per turn: the turn's discounted return normalised within the turns of
        valid episodes that acted from the same state; 0 where the state is met once or every return there
        is equal.

    >>> # two episodes from the same first state: one continues (and succeeds), one answers at once (fails)
    >>> adv = step_advantages([["s0", "s1"], ["s0"]], [[0.0, 1.0], [0.0]], [True, True], 0.5)
    >>> [[round(a, 4) for a in row] for row in adv]  # returns at s0: 0.5 and 0.0 -> +-0.7071
    [[0.7071, 0.0], [-0.7071]]
    """
    returns = [discounted_returns(r, gamma) for r in rewards]
    groups: dict[Hashable, list[tuple[int, int]]] = {}
    for i, (episode, ok) in enumerate(zip(keys, valid)):
        if ok:
            for t, key in enumerate(episode):
                groups.setdefault(key, []).append((i, t))
    out = [[0.0] * len(r) for r in rewards]
    for members in groups.values():
        for (i, t), a in zip(members, _normalised([returns[i][t] for i, t in members])):
            out[i][t] = a
    return out


def turn_advantages(episode: Sequence[float], step: Sequence[Sequence[float]] | None, turns: Sequence[int],
                    weight: float = 1.0) -> list[list[float]]:
    """Per episode and turn, ``episode[i] + weight * step[i][t]`` (``episode[i]`` alone when ``step`` is None).

    >>> turn_advantages([1.0, -1.0], [[0.5, 0.0], [-0.5]], [2, 1])
    [[1.5, 1.0], [-1.5]]
    >>> turn_advantages([1.0], None, [3])
    [[1.0, 1.0, 1.0]]
    """
    if step is None:
        return [[a] * n for a, n in zip(episode, turns)]
    return [[a + weight * s for s in row] for a, row in zip(episode, step)]
