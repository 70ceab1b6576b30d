"""Validation of YAML configuration (world specs, recipes, schedules) with errors that name the field.

One place turns a pydantic ``ValidationError`` into the message simrl prints: one line per problem,
``  field.path: what is wrong``, so every config file reports problems the same way (docs/design.md §5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from simrl.errors import SpecError

M = TypeVar("M", bound=BaseModel)

_NOISE = ("function-after", "[key]")  # pydantic's validator and dict-key markers add nothing to a path


def validate_mapping(model: type[M], data: object, *, source: str, what: str, example: str,
                     path: Callable[[list[str]], list[str]] | None = None) -> M:
    """Validate a parsed YAML mapping as ``model``.

    Args:
        model: the pydantic model (``extra="forbid"`` so unknown fields are reported).
        data: the parsed YAML.
        source: where the data came from (a file path), first word of the message.
        what: what the file is ("world spec", "recipe", "schedule").
        example: where to check field spellings, named in the unknown-field message.
        path: optional clean-up of a field path (a list of its parts) before it is printed.

    Raises:
        SpecError: ``data`` is not a mapping, or fails validation: one line per problem, each
            ``  field.path: message`` (``(top level)`` for whole-model checks).
    """
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a {what} must be a YAML mapping (key: value), got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            parts = [str(p) for p in e["loc"] if p not in _NOISE]
            parts = path(parts) if path else parts
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown field; check its spelling against {example}"
            lines.append(f"  {'.'.join(parts) or '(top level)'}: {msg}")
        raise SpecError(f"{source}: invalid {what}\n" + "\n".join(lines)) from None
