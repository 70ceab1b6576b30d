"""Which of simrl's extras provides a module that is not installed: one line with the install command.

The extras are read from pyproject.toml's ``[project.optional-dependencies]`` when simrl runs from a
source checkout (an editable install's metadata is as old as the install), else from the installed
distribution's metadata (``Requires-Dist: trl<2,>=1.0; extra == "trl"``, written from that same table), so
this module lists none of its own. A module maps to a requirement whose canonical name (PEP 503) equals the module's top-level name
(``trl`` -> ``trl``) or starts with it and a dash (``llama_cpp`` -> ``llama-cpp-python``).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*(?:;(.*))?$")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
TORCH_CPU = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
"""How to install a CPU-only torch (the README's note), before simrl."""


def canonical(name: str) -> str:
    """PEP 503 normalised name: ``Llama_CPP.python`` -> ``llama-cpp-python``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> list[str]:
    """``Requires-Dist`` lines: from the checkout's pyproject.toml, else the installed metadata, else none."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib

            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
            if project.get("name") == "simrl":
                return list(project.get("dependencies", [])) + [
                    f'{req}; extra == "{extra}"' for extra, reqs in project.get("optional-dependencies", {}).items()
                    for req in reqs]
        except (ImportError, ValueError, OSError):  # Python 3.10 has no tomllib: the metadata then
            pass
    try:
        return list(metadata.requires("simrl") or [])
    except metadata.PackageNotFoundError:
        return []


def requirements() -> dict[str, set[str]]:
    """Requirement (canonical name) -> the extras that list it (an empty set: a core dependency)."""
    lines = _declared()
    found: dict[str, set[str]] = {}
    for line in lines:
        match = _REQ.match(line)
        if match is None:
            continue
        extras = set(_EXTRA.findall(match.group(2) or ""))
        found.setdefault(canonical(match.group(1)), set()).update(extras)
    return found


def missing_module_message(module: str) -> str | None:
    """The one-line fix for ``ModuleNotFoundError`` of ``module``; None for simrl's own modules (a bug).

    >>> "pip install" in (missing_module_message("no_such_module_xyz") or "")
    True
    """
    top = module.split(".")[0]
    if not top or top == "simrl":
        return None
    name, reqs = canonical(top), requirements()
    match = next((r for r in reqs if r == name), None) or next((r for r in sorted(reqs) if r.startswith(name + "-")), None)
    if match is None:
        return f"the Python module {top!r} is not installed; install the package that provides it (pip install ...)"
    extras = sorted(reqs[match])
    if not extras:
        hint = f" (a CPU-only torch: {TORCH_CPU})" if match == "torch" else ""
        return f"{match}, a dependency of simrl, is not installed; install it with: pip install {match}{hint}"
    which = " or ".join(f"pip install 'simrl[{e}]'" for e in extras)
    return f"{match} is not installed: it comes with simrl's {', '.join(extras)} extra; install it with: {which}"
