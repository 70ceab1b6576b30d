"""``--set key=value`` overrides of a YAML configuration (recipes), applied before validation.

Keys are dotted paths into the mapping (``budget.steps``, ``arms.real.environment``); values are
parsed as YAML (``seeds=[0,1]`` is a list, ``budget.steps=2`` an int, ``policy.kind=scorer`` a
string), the same way the file itself is read, so an override is validated exactly like the file::

    apply_overrides({"budget": {"steps": 60}}, ["budget.steps=2", "seeds=[0]"])
    # -> {"budget": {"steps": 2}, "seeds": [0]}
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import yaml

from simrl.errors import SpecError


def parse_override(text: str) -> tuple[list[str], object]:
    """``"a.b=VALUE"`` -> ``(["a", "b"], parsed VALUE)``.

    Raises:
        SpecError: no ``=``, an empty key part, or a value that is not YAML (one line).
    """
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise SpecError(f"--set {text!r}: expected KEY=VALUE with a dotted KEY, e.g. --set budget.steps=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        reason = str(err).splitlines()[0]
        raise SpecError(f"--set {text!r}: the value is not valid YAML ({reason})") from None
    return parts, value


def apply_overrides(data: object, overrides: Iterable[str]) -> object:
    """A copy of ``data`` (a parsed YAML mapping) with each ``KEY=VALUE`` override set, in order.

    Missing intermediate mappings are created (``arms.new.environment=real``); the caller validates
    the result, which reports unknown fields by their dotted path.

    Raises:
        SpecError: a malformed override, or a key that passes through a value that is not a mapping.
    """
    overrides = list(overrides)
    if not overrides:
        return data
    out = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict):
                break
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError(f"--set {text!r}: {'.'.join(parts[:i + 1])} is a {type(node).__name__}, "
                                "not a mapping; set it whole, e.g. --set "
                                f"{'.'.join(parts[:i + 1])}=...")
        if not isinstance(node, dict):
            raise SpecError(f"--set {text!r}: the configuration is not a mapping")
        node[parts[-1]] = value
    return out
