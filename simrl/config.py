"""Reading and validating configuration (world specs, recipes, schedules) with errors that name the field.

:func:`load_mapping` is the one reader of YAML/JSON configuration files: a missing, unreadable,
binary, non-UTF-8 or malformed file becomes one :class:`~simrl.errors.SpecError` line naming the file
and the fix. :func:`validate_mapping` turns a pydantic ``ValidationError`` into the message simrl
prints: one line per problem, ``  field.path: what is wrong``, so every config file reports problems
the same way (docs/design.md §5). :func:`check_url` is the one check of URL options.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from simrl.errors import SimrlError, SpecError

M = TypeVar("M", bound=BaseModel)

ENDPOINT_RETRIES = 3
"""Retries of a transient failure (connection error, 408 / 409 / 429 / 5xx) of every OpenAI-compatible endpoint
simrl calls: the policy's (:class:`simrl.policies.openai_policy.OpenAIPolicy`), the world model's
(:class:`simrl.wm.openai_backend.OpenAIBackend`) and the judge's (:class:`simrl.fidelity.judge.Judge`); the
``openai`` SDK's ``max_retries`` (exponential backoff, ``Retry-After`` honoured), so ``1 + ENDPOINT_RETRIES``
requests at most. Each constructor takes another value as ``max_retries``."""

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


MAX_CONFIG_BYTES = 10 << 20
"""Largest configuration file read (10 MiB); a spec, recipe or schedule is a few kB."""


def load_mapping(path: str | Path, what: str, loader: Any = None) -> Any:
    """Read a YAML (or JSON, a subset of YAML) configuration file.

    Args:
        path: the file.
        what: what the file is, for messages ("world spec", "recipe", "schedule").
        loader: a ``yaml`` loader class (default ``yaml.SafeLoader``; must be safe).

    Returns:
        The parsed document (not yet validated: see :func:`validate_mapping`).

    Raises:
        SpecError: one line naming the file: missing, unreadable, too large, binary or not UTF-8,
            not valid YAML (with the line and column of the problem).
    """
    import yaml

    p = Path(path)
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise SpecError(f"{p}: a {what} of {p.stat().st_size} bytes is too large (at most {MAX_CONFIG_BYTES})")
        raw = p.read_bytes()
    except OSError as err:
        raise SpecError(f"{p}: cannot read the {what} ({err.strerror or err}); check the path") from None
    if b"\x00" in raw:
        raise SpecError(f"{p}: the {what} is a binary file, not YAML text; give the .yaml file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{p}: the {what} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=loader or yaml.SafeLoader)  # noqa: S506 - SafeLoader or a subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{p}: the {what} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{p}: the {what} nests too deeply to be a {what}") from None


def check_url(url: str, field: str) -> None:
    """Refuse anything but an ``http(s)://host[:port][/path]`` URL.

    Raises:
        SimrlError: naming ``field``, with an example of a valid value.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:
        ok = False
    if not ok:
        raise SimrlError(f"{field}: {url!r} is not an http(s) URL; give one like http://127.0.0.1:8000/v1")
