"""The tiny random model and local tokenizer used by the trl/verl mechanics tests."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("transformers", reason="the tiny model and its tokenizer are built with transformers")

from simrl.testing.tiny_model import make_tiny_model, make_tokenizer  # noqa: E402

TOOLS = [{"type": "function", "function": {"name": "web_search", "description": "Search.",
                                           "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]


def test_tokenizer_round_trips_and_renders_hermes_tool_calls():
    tok = make_tokenizer()
    text = 'A search for "Zorvan Kettle" found 3 results: [1] https://a.example/x 2031-04-05 ünïcode'
    assert tok.decode(tok(text).input_ids) == text  # byte-level: every string is encodable
    messages = [{"role": "system", "content": "Find facts."}, {"role": "user", "content": "Who founded Velmora?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "web_search", "arguments": {"query": "Velmora"}}}]},
                {"role": "tool", "content": "[1] https://velmora.example"}]
    rendered = tok.apply_chat_template(messages, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<|im_start|>system\nFind facts.\n\n# Tools\n")
    assert json.loads(rendered.split("<tools>\n")[1].split("\n</tools>")[0]) == TOOLS[0]
    call = re.findall(r"<tool_call>\n(.*?)\n</tool_call>", rendered)[-1]
    assert json.loads(call) == {"name": "web_search", "arguments": {"query": "Velmora"}}
    assert "<|im_start|>user\n<tool_response>\n[1] https://velmora.example\n</tool_response><|im_end|>\n" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    for special in ("<|im_start|>", "<|im_end|>", "<tool_call>"):
        assert len(tok(special, add_special_tokens=False).input_ids) == 1


def test_tiny_model_loads_and_generates(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = make_tiny_model(tmp_path / "m", seed=1)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.hidden_size // model.config.num_attention_heads == 64
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids.shape[1]
    again = AutoModelForCausalLM.from_pretrained(make_tiny_model(tmp_path / "m2", seed=1))
    assert torch.equal(again.model.layers[0].mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight)


def test_tiny_model_needs_64_wide_heads(tmp_path):
    with pytest.raises(ValueError, match="multiple of 64"):
        make_tiny_model(tmp_path / "m", hidden=100)
