"""A tiny random Llama with a BPE tokenizer trained here, for the ``transformers`` world-model backend tests.

Unlike :func:`simrl.testing.tiny_model.make_tiny_model` (a Qwen2 with a ChatML tool template and a
fixed corpus and context), the tests pick the tokenizer's corpus (so a long prompt is short in
tokens) and the context length (so prompt fitting can be exercised on 128 positions).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

HAVE_TRANSFORMERS = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "tokenizers"))
"""Whether torch, transformers and tokenizers are importable (else the tests that build the model skip)."""
TEMPLATE = ("{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")
"""A minimal chat template: ``<|role|>content<|end|>`` per message, then ``<|assistant|>``."""


def make_tiny_llama(folder: Path, corpus: list[str], *, vocab_size: int, max_positions: int) -> Path:
    """Save a 2-layer random Llama (hidden 128, head_dim 64, seed 0) and its tokenizer to ``folder``.

    Args:
        folder: an existing folder, loadable afterwards with ``from_pretrained``.
        corpus: the texts the byte-level BPE tokenizer is trained on (every string stays encodable).
        vocab_size: target vocabulary, the special tokens ``<unk>`` and ``<|end|>`` (eos and pad) included.
        max_positions: the model's context length in tokens.

    Returns:
        ``folder``.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<|end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", eos_token="<|end|>",
                                  pad_token="<|end|>", chat_template=TEMPLATE)
    tok.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=64,
                         max_position_embeddings=max_positions, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
