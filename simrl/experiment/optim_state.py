"""An optimizer's state inside a run checkpoint: compressed where a resume needs it, dropped elsewhere.

:func:`simrl.experiment.runs.save_checkpoint` stores the optimizer's ``state_dict()`` :func:`pack`-ed in
the latest checkpoint and :func:`slim`-s it in the one that was latest before; ``latest_checkpoint``
gives it back :func:`unpack`-ed, as it was saved. Why compress: Adam keeps two moments per parameter
(twice the policy's size), and for the scorer policy's hashed embeddings (32,768 buckets x 64) they are
zero but for the buckets the run has seen: after the quickstart's 24 steps 33.7 MB of moments are
0.8 MB with zlib level 1 (0.05 s); the weights themselves, random, do not compress and are left as they are.
"""

from __future__ import annotations

import io
import zlib
from typing import Any

PACKED = "zlib"
"""The key of a packed state: ``{"zlib": uint8 tensor}`` of the state's ``torch.save`` bytes."""


def pack(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (an optimizer's ``state_dict()``) as ``{"zlib": uint8 tensor}`` (zlib level 1, RFC 1950)."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return {PACKED: torch.frombuffer(bytearray(zlib.compress(buf.getvalue(), 1)), dtype=torch.uint8)}


def unpack(entry: Any) -> Any:
    """The state :func:`pack` stored; anything else (an unpacked state, None) as it is.

    Raises:
        zlib.error / RuntimeError: damaged bytes (the caller treats the checkpoint as damaged).
    """
    if not (isinstance(entry, dict) and set(entry) == {PACKED}):
        return entry
    import torch

    raw = zlib.decompress(entry[PACKED].numpy().tobytes())
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def slim(entry: Any) -> dict[str, Any] | None:
    """The optimizer's settings without its moments (``{"state": {}, "param_groups": ...}``: loading it
    restarts the moments), or None when ``entry`` holds no moments (already slim, or no optimizer)."""
    state = unpack(entry)
    if not (isinstance(state, dict) and state.get("state")):
        return None
    return {"state": {}, "param_groups": state.get("param_groups", [])}
