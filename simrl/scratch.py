"""Where simrl's temporary folders go: the system's temporary folder, or a run's own ``tmp/``.

Environments copy a world's records into per-episode databases under temporary folders
(``simrl-wm-env-*``, ``simrl-wm-records-*``, ``simrl-mcp-world-*``); they are removed when the
environment closes or the process exits, but a ``kill -9`` runs no clean-up. A trainer therefore
puts them under its run folder (:func:`under`): the next writer of that run (a ``--resume``, which
holds the run's lock, :mod:`simrl.experiment.locks`) clears what a killed process left there.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_root: Path | None = None


def mkdtemp(prefix: str) -> Path:
    """A new temporary folder named ``<prefix>XXXX`` under the current root (see :func:`under`)."""
    if _root is not None:
        _root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_root))


@contextlib.contextmanager
def under(folder: str | Path) -> Iterator[Path]:
    """Put simrl's temporary folders under ``folder`` while the body runs, emptying it first and last.

    The caller must be the only user of ``folder`` (it holds the run's lock): what is there on entry
    was left by a killed process. Not thread-safe across roots: one root per process at a time.
    """
    global _root
    root = Path(folder)
    shutil.rmtree(root, ignore_errors=True)
    previous, _root = _root, root
    try:
        yield root
    finally:
        _root = previous
        shutil.rmtree(root, ignore_errors=True)
