"""The verl tool class: one simrl environment tool as a ``verl.tools.base_tool.BaseTool``.

verl imports it in its agent-loop workers from the tool config (``class_name:
simrl.trainers.verl.adapter.SimrlTool``, written by :func:`simrl.trainers.verl.tools.write_tool_config`);
importing this module imports verl (seconds), which is why the light parts (settings, schemas, the
YAML writer) live in :mod:`simrl.trainers.verl.tools`.

One generic class, instantiated once per tool schema of the environment: the tool's name comes from
its schema, the environment from the shared config (:class:`~simrl.trainers.verl.tools.ToolSettings`).
A call runs in the trajectory's environment episode (:mod:`simrl.trainers.verl.sessions`): the first
call of a trajectory makes and resets the arm's environment, later calls step it. Its observation
text is the ``ToolResponse``; the step reward is 0 (the task reward is
:func:`simrl.trainers.verl.reward.compute_score`'s). Errors (bad arguments, a tool's own error, a
failed environment) come back as error observations, never as exceptions.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

from simrl.trainers.verl.sessions import SessionRegistry, registry
from simrl.trainers.verl.tools import ToolSettings


def _task_id(create_kwargs: dict[str, Any], agent_data: Any) -> str | None:
    """The task id: the call's ``create_kwargs``, else any tool's entry in the trajectory's ``tools_kwargs``."""
    if create_kwargs.get("task_id"):
        return str(create_kwargs["task_id"])
    for entry in (getattr(agent_data, "tools_kwargs", None) or {}).values():
        found = ((entry or {}).get("create_kwargs") or {}).get("task_id")
        if found:
            return str(found)
    return None


class SimrlTool(BaseTool):
    """A simrl environment's tool in verl's tool agent loop.

    Args:
        config: the tool entry's ``config`` (:class:`~simrl.trainers.verl.tools.ToolSettings` fields).
        tool_schema: the tool's OpenAI function schema (its name is the environment tool's name).

    Raises:
        pydantic.ValidationError: a config without the world, environment or arm.
    """

    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema) -> None:
        super().__init__(config, tool_schema)
        self.settings = ToolSettings.model_validate(config)
        self.sessions: SessionRegistry = registry(self.settings)
        self._create_kwargs: dict[str, dict[str, Any]] = {}

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, ToolResponse]:
        """Remember the call's ``create_kwargs`` (``{"task_id": ...}`` from the dataset's ``tools_kwargs``)."""
        instance_id = instance_id or uuid4().hex
        self._create_kwargs[instance_id] = dict(kwargs.get("create_kwargs") or {})
        return instance_id, ToolResponse()

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
                      ) -> tuple[ToolResponse, float, dict]:
        """Run the call in the trajectory's environment (``kwargs["agent_data"]``, verl's ``AgentData``).

        Returns:
            ``(ToolResponse(text=observation), 0.0, {})``.
        """
        agent_data = kwargs.get("agent_data")
        task_id = _task_id(self._create_kwargs.get(instance_id, {}), agent_data)
        if agent_data is None or task_id is None:
            why = "no agent_data (run it in verl's tool_agent loop)" if agent_data is None else \
                "no task_id in the row's tools_kwargs (write the data with simrl.trainers.verl.data)"
            return ToolResponse(text=f"Error: the simrl tool {self.name} cannot run: {why}"), 0.0, {}
        try:
            session = self.sessions.session(agent_data, task_id)
        except KeyError:
            return ToolResponse(text=f"Error: task {task_id!r} is not in the world {self.settings.world}"), 0.0, {}
        if not isinstance(parameters, dict):
            return ToolResponse(text=f"Error: the arguments of {self.name} must be a JSON object"), 0.0, {}
        text = await session.call(self.name, parameters)
        return ToolResponse(text=text), 0.0, {}

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        """0: the task reward is computed at the end of the trajectory (``compute_score``)."""
        return 0.0

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        """Forget the call (the trajectory's environment stays open until the trajectory ends)."""
        self._create_kwargs.pop(instance_id, None)
