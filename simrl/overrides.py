"""``--set`` overrides of a YAML configuration (recipes), in Hydra's override grammar, applied before validation.

Each override is parsed by hydra-core's own parser (``OverridesParser``, the grammar of ``python app.py
key=value`` in every Hydra application: https://hydra.cc/docs/advanced/override_grammar/basic/), so keys,
values and prefixes mean what they mean there::

    budget.steps=2                 change a key the recipe has
    +arms.big.environment=real     add a key it does not have (here: an arm)
    ++logging.project=x            add or change
    ~primary                       delete (the field's default applies again)

Values: ``2`` an int, ``0.5`` a float, ``true``, ``null``, ``[0,1]`` a list, ``{a: 1}`` a mapping,
``'quoted'`` or any other text a string (quoted when it holds ``=``, ``~``, ``,`` or brackets: a URL
with a query, ``'~/runs'``). A key "the recipe has" is one in the file or a field of its
schema (``schema``: a pydantic model, whose defaults are part of the recipe); a key that is neither is
refused with the closest existing key (difflib), unless it is asked for with ``+`` — a typo such as
``arms.sim-controled.environment=real`` never adds an arm::

    apply_overrides({"budget": {"steps": 60}}, ["budget.steps=2", "seeds=[0]"], Recipe)
    # -> {"budget": {"steps": 2}, "seeds": [0]}
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from simrl.errors import SpecError

_FREE = "free"
"""Schema of a node whose keys are free (``dict[str, Any]`` options): any key exists."""


@dataclass(frozen=True)
class Override:
    """One parsed override: ``op`` (``set``, ``add``, ``force``, ``delete``), the key's parts, the value."""

    text: str
    op: str
    parts: list[str]
    value: Any


def parse_override(text: str) -> Override:
    """Parse one ``--set`` override with Hydra's grammar.

    Raises:
        SpecError: not an override (the parser's reason), a sweep (``a=1,2``) or a package (``@``): one line.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_override(text)
        if parsed.is_sweep_override():
            raise SpecError(f"--set {text!r}: a sweep (several values); --set takes one value: quote it "
                            f"to mean the text, e.g. --set {text.split('=', 1)[0]}='{text.split('=', 1)[-1]}'")
        value = parsed.value()
    except HydraException as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.startswith("See ")]
        reason = "; ".join(lines[1:] or lines)[:200]
        raise SpecError(f"--set {text!r}: not KEY=VALUE, +KEY=VALUE or ~KEY ({reason}), e.g. --set "
                        "budget.steps=2; quote a value that holds = ~ , or brackets: KEY='VALUE'") from None
    if parsed.package is not None:
        raise SpecError(f"--set {text!r}: a Hydra package (@...) has no meaning here; write KEY=VALUE")
    op = {OverrideType.CHANGE: "set", OverrideType.ADD: "add", OverrideType.FORCE_ADD: "force",
          OverrideType.DEL: "delete"}[parsed.type]
    return Override(text, op, parsed.key_or_group.split("."), value)


def apply_overrides(data: object, overrides: Iterable[str], schema: type[BaseModel] | None = None) -> object:
    """A copy of ``data`` (a parsed YAML mapping) with each override applied, in order.

    Args:
        data: the parsed file.
        overrides: Hydra overrides (module docstring).
        schema: the model ``data`` is validated as; its fields exist even where the file leaves them out.

    Raises:
        SpecError: a malformed override, a key that does not exist without ``+`` (naming the closest
            existing key), ``+`` on a key that exists, or a key through a value that is not a mapping.
    """
    overrides = list(overrides)
    if not overrides:
        return data
    out = copy.deepcopy(data)
    if not isinstance(out, dict):
        raise SpecError("--set: the configuration is not a mapping")
    for text in overrides:
        o = parse_override(text)
        missing = _missing(out, o.parts, schema, o.text)
        if o.op in ("set", "delete") and missing is not None:
            raise SpecError(_no_such_key(o, *missing))
        if o.op == "add" and _in_data(out, o.parts):
            raise SpecError(f"--set {o.text!r}: {'.'.join(o.parts)} is already there; drop the + to change it "
                            f"(--set {o.text.lstrip('+')})")
        _apply(out, o)
    return out


def _in_data(data: dict, parts: list[str]) -> bool:
    node: Any = data
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _schema_of(annotation: Any) -> Any:
    """What a field's annotation allows below it: a model class, ``("dict", value schema)``, ``_FREE``,
    ``"list"`` or None (a scalar)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [k for a in typing.get_args(annotation) if (k := _schema_of(a)) is not None]
        return kinds[0] if kinds else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if annotation is Any:
        return _FREE
    if origin is dict or annotation is dict:
        args = typing.get_args(annotation)
        inner = _schema_of(args[1]) if len(args) == 2 else _FREE
        return ("dict", inner) if isinstance(inner, type) else _FREE
    if origin is list or annotation is list:
        return "list"
    return None


def _missing(data: dict, parts: list[str], schema: type[BaseModel] | None,
             text: str) -> tuple[int, list[str], bool] | None:
    """None when the key exists (in ``data`` or ``schema``), else ``(index of the first missing part,
    the keys that exist at that level, whether that level is a model's fields)``.

    Raises:
        SpecError: the key passes through a value that is not a mapping (a list, a number).
    """
    node: Any = data
    kind: Any = schema if schema is not None else ("dict", None)
    for i, part in enumerate(parts):
        if kind == _FREE:
            return None
        if (node is not None and not isinstance(node, dict)) or kind in ("list", None):
            where = ".".join(parts[:i])
            shown = type(node).__name__ if node is not None else kind or "value"
            raise SpecError(f"--set {text!r}: {where} is a{'n' if shown[0] in 'aeiou' else ''} {shown}, not a "
                            f"mapping; set it whole, e.g. --set {where}=...")
        here = node if isinstance(node, dict) else {}
        if isinstance(kind, type):  # a model: its fields exist, given or not
            fields = list(kind.model_fields)
            if part not in fields and part not in here:
                return i, list(dict.fromkeys([*fields, *here])), True
            kind = _schema_of(kind.model_fields[part].annotation) if part in fields else ("dict", None)
        else:  # ("dict", value schema): a mapping of named entries (arms): only those given exist
            if part not in here:
                return i, list(here), False
            kind = kind[1] if kind[1] is not None else ("dict", None)
        node = here.get(part)
    return None


def _no_such_key(o: Override, index: int, keys: list[str], fields: bool) -> str:
    """The one-line refusal of a key that does not exist, with the closest one (difflib); the ``+`` form
    is offered where a new key can be valid (an entry of a mapping such as ``arms``, not a model field)."""
    prefix = ".".join(o.parts[:index])
    key = ".".join(o.parts[:index + 1])
    close = difflib.get_close_matches(o.parts[index], keys, n=1, cutoff=0.6)
    hint = (f"did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close
            else f"keys {'of ' + prefix if prefix else 'there'}: {', '.join(keys[:15]) or 'none'}")
    add = "" if o.op == "delete" or fields else f"; to add it, write --set +{o.text}"
    return f"--set {o.text!r}: the recipe has no {key} ({hint}){add}"


def _apply(data: dict, o: Override) -> None:
    """Set (or delete) ``o`` in ``data``, creating the mappings on the way (a null section becomes one)."""
    node = data
    for part in o.parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if o.op == "delete":
        node.pop(o.parts[-1], None)
    else:
        node[o.parts[-1]] = o.value
