"""Tool methods with real signatures from an environment's tool schemas, and a loop for async environments.

TRL's ``environment_factory`` (TRL 1.16, ``trl/trainer/grpo_trainer.py``) reads an environment's tools
from its class: every public function of ``type(instance)`` but ``reset`` and ``get_reward`` is a tool,
and the chat template gets its schema from ``transformers.utils.get_json_schema`` (type hints + a
Google-style docstring with an ``Args:`` line per parameter). simrl environments declare their tools as
OpenAI function schemas (``{"type": "function", "function": {"name", "description", "parameters"}}``),
so :func:`tool_method` turns one schema into such a function: its ``__signature__`` and ``__annotations__``
carry the parameters and their Python types (:func:`python_type`), its ``__doc__`` the descriptions.

The translation keeps names, descriptions, required vs optional, scalar types, enums (``Literal``),
unions and array item types; what a Python hint cannot say (nested object properties, numeric
bounds, string patterns) is left out of the schema the model sees, while the environment still
validates every call against its own schema. Docstring section words a tool description happens to
hold (``Args:``, ``Returns:``, ``Raises:``) are written ``Args -`` so that transformers' parser does not
cut the description there.

simrl environments are async (:class:`simrl.envs.base.Environment`); TRL calls ``reset`` and tool
methods synchronously from its training loop. :func:`run_sync` runs a coroutine on one event loop kept
in a daemon thread for the whole process, so an environment's connections (MCP sessions, subprocesses)
live on one loop from ``reset`` to ``close``.
"""

from __future__ import annotations

import asyncio
import inspect
import keyword
import re
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar, Union

from simrl.errors import SimrlError

T = TypeVar("T")

_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool,
                               "object": dict, "null": type(None)}
_SECTION = re.compile(r"\b(Args|Arguments|Returns|Raises|Yields)\s*:")
RESERVED = frozenset({"reset", "get_reward"})
"""Method names TRL gives another meaning (never tools)."""


def python_type(schema: dict[str, Any] | None) -> Any:
    """The Python type hint of a JSON-schema property, as ``get_json_schema`` maps it back.

    ``enum`` of scalars -> ``Literal[...]``; ``anyOf`` / ``oneOf`` / a list ``type`` -> ``Union``;
    ``array`` -> ``list[items]``; ``object`` -> ``dict``; ``string``, ``integer``, ``number``, ``boolean``
    -> ``str``, ``int``, ``float``, ``bool``; anything else (no type) -> ``Any``.

    >>> python_type({"type": "array", "items": {"type": "integer"}})
    list[int]
    >>> python_type({"type": "string", "enum": ["a", "b"]})
    typing.Literal['a', 'b']
    """
    schema = schema if isinstance(schema, dict) else {}
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(type(v) in (str, int, float, bool) for v in enum):
        return Literal[tuple(dict.fromkeys(enum))]
    options = schema.get("anyOf") or schema.get("oneOf")
    kind = schema.get("type")
    if isinstance(options, list) and options:
        return _union([python_type(o) for o in options])
    if isinstance(kind, list) and kind:
        return _union([python_type({**schema, "type": k}) for k in kind])
    if kind == "array":
        items = schema.get("items")
        return list[python_type(items)] if isinstance(items, dict) and items else list
    return _JSON_TYPES.get(kind, Any) if isinstance(kind, str) else Any


def _union(types: list[Any]) -> Any:
    unique = list(dict.fromkeys(types))
    return unique[0] if len(unique) == 1 else Union[tuple(unique)]  # noqa: UP007 - built from a list


def _one_line(text: Any) -> str:
    """``text`` on one line, its docstring section words defused (see the module docstring)."""
    return _SECTION.sub(r"\1 -", " ".join(str(text or "").split()))


def tool_method(schema: dict[str, Any], call: Callable[[Any, str, dict[str, Any]], str]) -> Callable[..., str]:
    """A function for a class body whose signature and docstring describe the tool ``schema``.

    Args:
        schema: an OpenAI function schema (``{"type": "function", "function": {...}}`` or the inner dict).
        call: ``call(self, tool_name, arguments) -> str``: what the method does; ``arguments`` holds the
            keyword arguments the model passed (optional ones it left out are not in it).

    Returns:
        ``method(self, **arguments) -> str`` named after the tool, with keyword-only parameters (required
        ones without a default, optional ones defaulting to None) and a Google-style docstring.

    Raises:
        SimrlError: the tool's name or a parameter's name is not a Python identifier, is a keyword, starts
            with ``_`` or is a name TRL reserves (``reset``, ``get_reward``).
    """
    fn = schema.get("function", schema)
    name = fn.get("name", "")
    params = fn.get("parameters") or {}
    props: dict[str, Any] = params.get("properties") or {}
    required = set(params.get("required") or [])
    for label in (name, *props):
        if not label.isidentifier() or keyword.iskeyword(label) or label.startswith("_") or label in RESERVED:
            what = "tool" if label == name else f"parameter of tool {name!r}"
            raise SimrlError(f"{what} {label!r} cannot be a Python method or argument name, which TRL's "
                             "environment_factory needs; rename it in the environment's tool schema")

    def method(self: Any, **arguments: Any) -> str:
        return call(self, name, {k: v for k, v in arguments.items() if not (v is None and k not in required)})

    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    lines = []
    for key in sorted(props, key=lambda k: k not in required):  # required first, each in schema order
        annotations[key] = python_type(props[key])
        default = inspect.Parameter.empty if key in required else None
        parameters.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=annotations[key]))
        prop = props[key] if isinstance(props[key], dict) else {}
        lines.append(f"    {key}: {_one_line(prop.get('description') or prop.get('title') or key)}")
    annotations["return"] = str
    method.__name__ = method.__qualname__ = name
    method.__signature__ = inspect.Signature(parameters, return_annotation=str)  # type: ignore[attr-defined]
    method.__annotations__ = annotations
    doc = _one_line(fn.get("description")) or f"The {name} tool."
    method.__doc__ = doc + ("\n\nArgs:\n" + "\n".join(lines) if lines else "")
    return method


_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on the process's environment loop (a daemon thread, started on first
    use) and return its result; its exception is raised here."""
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="simrl-environments", daemon=True).start()
            _loop = loop
    return asyncio.run_coroutine_threadsafe(coro, _loop).result()
