"""Shipped files (world specs, recipes, perturbation schedules), found by name or by path.

The YAML files live at the top of the repository (``worlds/``, ``recipes/``, ``recipes/schedules/``);
the wheel ships them unmoved as package data under ``simrl/worlds`` and ``simrl/recipes`` (mappings in
``pyproject.toml``), so relative paths inside a recipe (``world.spec: ../worlds/tiny.yaml``) resolve in
both layouts. :func:`resolve` is the one resolver every loader uses::

    resolve("quickstart", "recipe")            # -> .../recipes/quickstart.yaml
    resolve("recipes/quickstart.yaml", "recipe")  # that path, or the shipped file from any directory
    resolve("mcpmark", "schedule")             # -> .../recipes/schedules/mcpmark.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Kind = Literal["world", "recipe", "schedule"]

_SUBDIR: dict[str, tuple[str, ...]] = {"world": ("worlds",), "recipe": ("recipes",),
                                       "schedule": ("recipes", "schedules")}
_WHAT = {"world": "world spec", "recipe": "recipe", "schedule": "schedule"}


def root() -> Path:
    """The folder holding the shipped ``worlds/`` and ``recipes/``.

    Installed from a wheel: the ``simrl`` package folder itself. From a source checkout (editable
    install, or ``PYTHONPATH``): the checkout's root, next to the ``simrl`` package.
    """
    package = Path(__file__).resolve().parent
    return package if (package / "recipes").is_dir() else package.parent


def shipped_dir(kind: Kind) -> Path:
    """The folder of the shipped files of one kind (``worlds``, ``recipes`` or ``recipes/schedules``)."""
    return root().joinpath(*_SUBDIR[kind])


def shipped_names(kind: Kind) -> list[str]:
    """Names of the shipped files of one kind, sorted (recipes in sub-folders as ``gpu/tiny-smoke``)."""
    base = shipped_dir(kind)
    pattern = "**/*.yaml" if kind == "recipe" else "*.yaml"
    return sorted(str(p.relative_to(base).with_suffix("")) for p in base.glob(pattern)
                  if kind != "recipe" or "schedules" not in p.relative_to(base).parts)


def resolve(value: str | Path, kind: Kind) -> Path:
    """A user's path or shipped name -> the file to read.

    Tried in order: ``value`` as a path; a shipped name (``quickstart``, ``gpu/tiny-smoke``,
    ``mcpmark``, with or without ``.yaml``); a repository-relative path (``recipes/quickstart.yaml``,
    ``worlds/tiny.yaml``) read from the shipped files, so README commands work from any directory.

    Returns:
        An existing file, or ``Path(value)`` unchanged when nothing matches (the caller reports it with
        :func:`not_found`).
    """
    p = Path(value).expanduser()
    if p.is_file() or p.is_absolute():
        return p
    name = p if p.suffix in (".yaml", ".yml") else p.with_name(p.name + ".yaml")
    for candidate in (shipped_dir(kind) / name, root() / p):
        if candidate.is_file():
            return candidate
    return p


def not_found(value: str | Path, kind: Kind) -> str:
    """The one-line message for a file that :func:`resolve` could not find, listing the shipped names."""
    names = ", ".join(shipped_names(kind)) or "none found"
    return f"{_WHAT[kind]} not found: {value} (a path, or a shipped name: {names})"
