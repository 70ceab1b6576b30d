"""``open_within``: a local model's reply that has not opened its prediction block after N tokens is cut there;
``parse_retries``: the re-samples of an unparsed reply, per arm. The cut is tested on the packaged SmolLM2 GGUF
(llama.cpp, greedy): a reply without the block stops at N tokens and is a prefix of the uncut reply; a reply
that opens the block in time is the uncut reply, token for token.
"""

from __future__ import annotations

import pydantic
import pytest

from simrl.errors import SimrlError
from simrl.experiment.recipe_arms import Arm
from simrl.wm.backend import Sampling
from simrl.wm.cache import cache_key
from tests.wm.test_local_backends import needs_llama

STORY = [{"role": "user", "content": "Write a long story about a cat in Paris."}]
BLOCK = [{"role": "system", "content": "Always answer inside <predicted_observation>...</predicted_observation>."},
         {"role": "user", "content": "web_search: capital of France"},
         {"role": "assistant", "content": "<predicted_observation>Paris is the capital of France.</predicted_observation>"},
         {"role": "user", "content": "web_search: a long description of the river Seine and its bridges"}]


@needs_llama
async def test_open_within_cuts_a_reply_without_the_block_and_keeps_one_with_it():
    from simrl.wm.llamacpp_backend import OPEN_TAG, LlamaCppBackend

    model = LlamaCppBackend(n_ctx=1024, n_threads=1)
    try:
        full = await model.generate(STORY, Sampling(max_tokens=24))
        assert model.last_stats["completion_tokens"] == 24 and OPEN_TAG not in full
        cut = await model.generate(STORY, Sampling(max_tokens=24, open_within=6))
        assert model.last_stats["cut"] is True and model.last_stats["completion_tokens"] == 6
        assert cut and len(cut) < len(full) and full.startswith(cut)

        whole = await model.generate(BLOCK, Sampling(max_tokens=40))
        assert whole.startswith(OPEN_TAG) and not model.last_stats["cut"]
        tokens = model.last_stats["completion_tokens"]
        assert tokens > 12
        kept = await model.generate(BLOCK, Sampling(max_tokens=40, open_within=8))
        assert kept == whole and model.last_stats["cut"] is False
        assert model.last_stats["completion_tokens"] == tokens  # counted by evaluations as llama.cpp counts them
    finally:
        await model.close()


def test_cache_key_holds_without_open_within_and_differs_with_it():
    msgs = [{"role": "user", "content": "x"}]
    plain = Sampling(max_tokens=16)
    assert "open_within" not in plain.key_fields() and plain.key_fields() == {
        "temperature": 0.0, "top_p": 1.0, "max_tokens": 16, "seed": None}  # the key of every earlier cache
    with_cut = cache_key("llamacpp", "m", msgs, Sampling(max_tokens=16, open_within=4))
    assert with_cut != cache_key("llamacpp", "m", msgs, plain)
    assert with_cut != cache_key("llamacpp", "m", msgs, Sampling(max_tokens=16, open_within=5))
    with pytest.raises(pydantic.ValidationError):
        Sampling(open_within=0)


def test_open_within_needs_the_llamacpp_backend(tiny_world):
    from simrl.envs.registry import make

    with pytest.raises(pydantic.ValidationError, match="open_within needs backend llamacpp"):
        Arm(environment="world_model", backend="oracle", open_within=32)
    with pytest.raises(pydantic.ValidationError, match="only world_model arms"):
        Arm(environment="real", open_within=32)
    with pytest.raises(SimrlError, match="needs the llamacpp backend"):
        make("mcp-world", world=tiny_world, world_model="oracle", wm_open_within=32)


@needs_llama
def test_an_arm_passes_open_within_and_parse_retries_to_its_environment(tiny_world):
    from simrl.experiment.runs import env_factory

    arm = Arm(environment="world_model", backend="llamacpp", max_tokens=64, open_within=16, parse_retries=0)
    env = env_factory("mcp-world", arm, tiny_world)().unwrapped
    assert env.sampling == Sampling(max_tokens=64, open_within=16)
    assert env._predictor.max_parse_retries == 0
    default = env_factory("mcp-world", Arm(environment="world_model", backend="llamacpp"), tiny_world)().unwrapped
    assert default.sampling.open_within is None and default._predictor.max_parse_retries == 1
