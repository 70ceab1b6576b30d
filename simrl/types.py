"""The environment contract's data: actions, observations, steps and trajectories.

Typed, frozen, serialisable (pydantic) models in the style of OpenEnv's typed actions and
observations and Gymnasium's documented ``step`` return (docs/design.md §5): an environment's
``reset`` returns an :class:`Observation`, ``step`` a :class:`Step`, never a bare tuple. A finished
episode is a :class:`Trajectory`, one JSON line in a ``trajectories.jsonl`` file.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ToolCall(BaseModel):
    """One tool call: ``{"name": ..., "arguments": {...}}`` (the OpenAI / Qwen-AgentWorld layout)."""

    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    call_id: str | None = None


class Action(BaseModel):
    """What a policy does in one turn: call tools, or give a final answer (which ends the episode).

    Exactly one of ``tool_calls`` (non-empty) or ``answer`` is set; ``text`` keeps the policy's raw
    output (reasoning, the markdown table of a table task, ...).
    """

    model_config = ConfigDict(frozen=True)

    tool_calls: list[ToolCall] = Field(default_factory=list)
    answer: str | None = None
    text: str = ""

    @classmethod
    def call(cls, tool: str, /, **arguments: Any) -> Action:
        """An action with one tool call: ``Action.call("web_search", query="...")``."""
        return cls(tool_calls=[ToolCall(name=tool, arguments=arguments)])

    @classmethod
    def final(cls, answer: str) -> Action:
        """A final-answer action."""
        return cls(answer=answer, text=answer)

    @property
    def is_final(self) -> bool:
        """True when the action is a final answer."""
        return self.answer is not None


class ToolResult(BaseModel):
    """The result of one tool call as the policy sees it: text, and whether it is an error."""

    model_config = ConfigDict(frozen=True)

    name: str
    content: str
    is_error: bool = False
    call_id: str | None = None


class Observation(BaseModel):
    """What the policy sees after ``reset`` or a ``step``.

    Attributes:
        text: the task prompt (after reset) or the tool results rendered as text.
        tools: tool schemas (OpenAI function format) the policy may call; set on reset.
        results: one :class:`ToolResult` per tool call of the last action.
    """

    model_config = ConfigDict(frozen=True)

    text: str
    tools: list[dict[str, Any]] = Field(default_factory=list)
    results: list[ToolResult] = Field(default_factory=list)


class Step(BaseModel):
    """The outcome of ``env.step(action)`` (Gymnasium's five values, named).

    Attributes:
        observation: the next observation.
        reward: scalar reward for this step (the task reward arrives on the final step).
        terminated: the episode ended inside the task (final answer given).
        truncated: the episode was cut short from outside (turn limit, environment failure).
        info: extra diagnostics (scores, applied perturbations, failure reasons); JSON-serialisable.
    """

    model_config = ConfigDict(frozen=True)

    observation: Observation
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = Field(default_factory=dict)


class Turn(BaseModel):
    """One turn of a trajectory: the action and the step it produced."""

    model_config = ConfigDict(frozen=True)

    action: Action
    step: Step


class Trajectory(BaseModel):
    """A finished episode (one line of a trajectories JSONL file).

    Attributes:
        task_id: the task.
        env_id: environment id (``search``, ``mcp-world``, ``mcp``, ``bfcl``).
        backend: ``real`` or the world-model backend that produced observations.
        seed: the episode seed.
        initial: the observation after reset.
        turns: the turns, in order.
        reward: the episode's total reward.
        status: ``success`` / ``failure`` (task outcome) or ``env_failure`` (the environment broke:
            excluded from the training signal) or ``truncated`` (turn limit).
        info: final diagnostics (scores, perturbations met, failure reason).
    """

    task_id: str
    env_id: str
    backend: str = "real"
    seed: int = 0
    initial: Observation
    turns: list[Turn] = Field(default_factory=list)
    reward: float = 0.0
    status: Literal["success", "failure", "env_failure", "truncated"] = "failure"
    info: dict[str, Any] = Field(default_factory=dict)
