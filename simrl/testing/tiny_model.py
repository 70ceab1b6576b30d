"""A tiny random causal LM and a locally trained tokenizer, for mechanics tests and GPU smoke tests.

No model hub is needed: the tokenizer is a byte-level BPE trained here with ``tokenizers`` on a small
built-in corpus (JSON tool calls, chat markup, English), wrapped as a ``PreTrainedTokenizerFast``
with a Qwen2.5-style chat template (ChatML ``<|im_start|>role ... <|im_end|>``; tools listed in the
system turn; tool calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, the format
verl's and vLLM's ``hermes`` tool parser read; tool results as ``<tool_response>`` in a user turn).
The model is a 2-layer Qwen2 with random weights (head dim 64, which vLLM needs). It writes
gibberish: it tests that the plumbing runs (tokens, masks, losses, checkpoints), not that anything
is learned.

Command line (the GPU smoke tests use it)::

    python -m simrl.testing.tiny_model OUT_DIR [--layers 2] [--hidden 128] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
"""Control tokens (dropped by ``decode(skip_special_tokens=True)``), as in Qwen2.5's tokenizer."""
MARKUP_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]
"""Single tokens that are not special (kept by ``skip_special_tokens``), as Qwen2.5/Qwen3 mark them."""

CHAT_TEMPLATE = (
    "{% if tools %}"
    "<|im_start|>system\n"
    "{% if messages and messages[0].role == 'system' %}{{ messages[0].content }}{% else %}"
    "You are a helpful assistant.{% endif %}"
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "<tools>{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n\n"
    "For each function call, return a json object within <tool_call></tool_call> XML tags:\n"
    "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
    "{% elif messages and messages[0].role == 'system' %}"
    "<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'user' %}"
    "<|im_start|>user\n{{ message.content }}<|im_end|>\n"
    "{% elif message.role == 'assistant' %}"
    "<|im_start|>assistant\n{{ message.content or '' }}"
    "{% for tc in message.tool_calls or [] %}"
    "{% set f = tc.function if tc.function is defined else tc %}"
    "\n<tool_call>\n{\"name\": \"{{ f.name }}\", \"arguments\": "
    "{% if f.arguments is string %}{{ f.arguments }}{% else %}{{ f.arguments | tojson }}{% endif %}"
    "}\n</tool_call>"
    "{% endfor %}<|im_end|>\n"
    "{% elif message.role == 'tool' %}"
    "{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}"
    "\n<tool_response>\n{{ message.content }}\n</tool_response>"
    "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>\n{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
).replace("%}\n", "%}\n\n")  # transformers renders with trim_blocks: the newline after a tag is dropped
"""Qwen2.5-style ChatML with tools (a shortened form of the template Qwen2.5 models ship)."""


def _corpus() -> list[str]:
    """A small text corpus covering JSON tool calls, chat markup and plain English words."""
    words = ("the a of to and in is was for on with as by at from that this which who when where what how many "
             "search query result results page url title snippet date answer record records table row column "
             "list read write update create delete error not found timeout partial empty success company person "
             "city country product event founded born located capital chief executive member published organized "
             "acquired participated headquartered name id value true false null number string object array").split()
    lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 5)]
    calls = [json.dumps({"name": n, "arguments": {"query": " ".join(words[i:i + 3]), "page": i, "id": f"r{i}"}})
             for i, n in enumerate(["web_search", "web_extractor", "list_records", "get_record", "update_record",
                                    "search", "open", "final_answer"] * 4)]
    digits = [" ".join(str(i * 7919 % 10 ** k) for k in range(1, 6)) for i in range(50)]
    return lines * 4 + calls + digits + ["{\"type\": \"function\", \"function\": {\"name\": \"x\", "
                                         "\"description\": \"y\", \"parameters\": {\"type\": \"object\", "
                                         "\"properties\": {}, \"required\": []}}}"] * 4


def make_tokenizer(out_dir: str | Path | None = None, vocab_size: int = 1024) -> Any:
    """Train a byte-level BPE tokenizer (about 1 s) and wrap it as a ``PreTrainedTokenizerFast``.

    Args:
        out_dir: where to save it (``save_pretrained``); None: not saved.
        vocab_size: target vocabulary, special tokens included (every byte is always encodable).

    Returns:
        The tokenizer: eos ``<|im_end|>``, pad ``<|endoftext|>``, the ChatML template :data:`CHAT_TEMPLATE`.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(_corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token=None, unk_token=None)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP_TOKENS])
    tok.chat_template = CHAT_TEMPLATE
    if out_dir is not None:
        tok.save_pretrained(str(out_dir))
    return tok


def make_tiny_model(out_dir: str | Path, *, layers: int = 2, hidden: int = 128, seed: int = 0,
                    vocab_size: int = 1024) -> Path:
    """Write a random 2-layer Qwen2 causal LM and its tokenizer to ``out_dir`` (about 1 MB, 1-2 s).

    Args:
        out_dir: the model folder (created); loadable with ``AutoModelForCausalLM.from_pretrained``,
            ``AutoTokenizer.from_pretrained`` and by vLLM.
        layers: decoder layers.
        hidden: hidden size (a multiple of 64: heads are 64 wide, as vLLM's kernels need).
        seed: torch seed of the random weights.
        vocab_size: tokenizer vocabulary (the model's embedding matches the tokenizer's length).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ValueError: ``hidden`` is not a positive multiple of 64.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config

    if hidden <= 0 or hidden % 64:
        raise ValueError(f"hidden must be a positive multiple of 64 (head dim 64), got {hidden}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(out, vocab_size=vocab_size)
    heads = hidden // 64
    config = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=8192, tie_word_embeddings=True, torch_dtype="float32",
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m simrl.testing.tiny_model OUT_DIR``: write a tiny random model + tokenizer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = make_tiny_model(args.out_dir, layers=args.layers, hidden=args.hidden, seed=args.seed)
    print(path)


if __name__ == "__main__":
    main()
