"""Test helpers: verl's ToolAgentLoop driven by a scripted stand-in for the policy server.

Import only after ``pytest.importorskip("verl")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from verl.experimental.agent_loop.agent_loop import AgentLoopOutput, DictConfigWrap, ToolListWrap
from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop
from verl.tools.tool_registry import initialize_tools_from_config
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.workers.rollout.replica import TokenOutput

from simrl.experiment.recipe import parse_recipe, resolve_files
from simrl.types import Action, Observation, Step, ToolResult, Turn

ARMS = {"real": {"environment": "real"},
        "sim-uncontrolled": {"environment": "world_model", "backend": "oracle"},
        "sim-controlled": {"environment": "world_model", "backend": "oracle", "schedule": "mcpmark", "mode": "inject"}}


def make_recipe(world: Path, env_id: str = "mcp-world", arms: dict | None = None, real: dict | None = None) -> Any:
    """A verl recipe on the world folder ``world`` (llm policy; 4 steps of 2 tasks x 2 episodes)."""
    data = {"name": "verl-test", "world": {"spec": str(world)}, "env": {"id": env_id},
            "real": real if real is not None else ({"transport": "inprocess"} if env_id == "mcp-world" else {}),
            "arms": arms or ARMS, "policy": {"kind": "llm", "model": "tiny"}, "trainer": {"kind": "verl"},
            "budget": {"steps": 4, "batch": 2, "group_size": 2, "max_turns": 12}}
    return resolve_files(parse_recipe(data), Path("."))


def loop_config(max_turns: int = 20, response_length: int = 16384) -> Any:
    """The part of verl's trainer config ToolAgentLoop reads (hermes tool calls, as REQUIRED_OVERRIDES say)."""
    return OmegaConf.create({
        "actor_rollout_ref": {"rollout": {
            "multi_turn": {"max_user_turns": None, "max_assistant_turns": max_turns, "max_parallel_calls": 1,
                           "max_tool_response_length": 8192, "tool_response_truncate_side": "middle",
                           "format": "hermes"},
            "prompt_length": 4096, "response_length": response_length, "full_determinism": False}},
        "data": {"apply_chat_template_kwargs": {}, "mm_processor_kwargs": {}}})


def render(action: Action) -> str:
    """The policy's text for ``action``: a hermes tool call, or the final answer; then the eos."""
    if action.is_final:
        return f"{action.answer}<|im_end|>"
    call = action.tool_calls[0]
    return f"<tool_call>\n{json.dumps({'name': call.name, 'arguments': call.arguments})}\n</tool_call><|im_end|>"


class ScriptedServer:
    """Stand-in for verl's LLM server client (``async generate(...) -> TokenOutput``).

    Each generation reads the last tool observation out of the prompt tokens (as a policy would), asks
    a scripted simrl expert (``policy.act``) for the next action and returns its tokens. ``answer``
    replaces the expert's final answer (a wrong-answer trajectory); ``global_steps`` is stamped on
    every output like verl's vLLM server does.
    """

    def __init__(self, tokenizer: Any, policy: Any, task: Any, tools: list[dict], *,
                 global_steps: int | None = None, answer: str | None = None, max_calls: int | None = None) -> None:
        self.tok, self.policy, self.task, self.tools = tokenizer, policy, task, tools
        self.global_steps, self.answer, self.max_calls = global_steps, answer, max_calls
        self.turns: list[Turn] = []
        self.last: Action | None = None
        self.outputs: list[list[int]] = []  # token ids of every generation
        self.observations: list[str] = []  # the observation texts the policy saw

    def _observe(self, prompt_ids: list[int]) -> None:
        text = self.tok.decode(prompt_ids)
        obs = text.rsplit("<tool_response>", 1)[1].split("</tool_response>", 1)[0].strip("\n")
        self.observations.append(obs)
        head, _, body = obs.partition("\n")
        name = self.last.tool_calls[0].name
        result = ToolResult(name=name, content=body if head.startswith(f"[{name}") else obs,
                            is_error=head == f"[{name} error]" or obs.startswith("Error"))
        self.turns.append(Turn(action=self.last, step=Step(observation=Observation(text=obs, results=[result]))))

    async def generate(self, *, request_id: str, prompt_ids: list[int], sampling_params: dict, **_: Any) -> TokenOutput:
        if self.last is not None:
            self._observe(prompt_ids)
        action = await self.policy.act(self.task.policy_view(), Observation(text=self.task.prompt, tools=self.tools),
                                       self.turns)
        if not action.is_final and self.max_calls is not None and len(self.turns) >= self.max_calls:
            action = Action.final(self.answer or "<answer>stopped</answer>")
        if action.is_final and self.answer is not None:
            action = Action.final(self.answer)
        self.last = None if action.is_final else action
        ids = self.tok.encode(render(action), add_special_tokens=False)
        self.outputs.append(ids)
        extra = {"global_steps": self.global_steps} if self.global_steps is not None else {}
        return TokenOutput(token_ids=ids, log_probs=[0.0] * len(ids), extra_fields=extra)


def load_tools(tool_config: Path) -> list:
    """The tools of a tool config, loaded by verl's own loader (as its agent-loop workers do)."""
    return initialize_tools_from_config(str(tool_config))


async def run_loop(tools: list, server: ScriptedServer, row: dict, tokenizer: Any, **config: Any) -> AgentLoopOutput:
    """One trajectory of verl's ToolAgentLoop on a dataset row (``prompt``, ``extra_info``)."""
    cfg = loop_config(**config)
    loop = ToolAgentLoop(trainer_config=DictConfigWrap(cfg), server_manager=server, tokenizer=tokenizer,
                         processor=None, dataset_cls=RLHFDataset, data_config=DictConfigWrap(cfg.data),
                         tools=ToolListWrap(tools))
    return await loop.run({}, raw_prompt=list(row["prompt"]), tools_kwargs=row["extra_info"]["tools_kwargs"],
                          extra_info=row["extra_info"])
