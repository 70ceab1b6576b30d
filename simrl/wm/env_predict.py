"""The guarded world-model prediction of one tool call (the reliability half of :mod:`simrl.wm.env`).

:class:`Predictor` turns a call's messages into an observation: the raw completion from the response
cache or the backend (which retries transient failures itself: the ``openai`` SDK's retries), re-sampled when it has no prediction block (then
marked ``unparsed``), cleaned of lines that echo the instruction blocks (leakage guard), and
re-sampled while it fails a control check. The policy never sees what is removed here. The rules
(re-sample temperatures and seeds, the notes put in a step's ``info``) are described in
:mod:`simrl.wm.env`.
"""

from __future__ import annotations

from typing import Any

from simrl.wm import prompts
from simrl.wm.backend import BackendError, Sampling, WorldModelBackend
from simrl.wm.cache import ResponseCache, cache_key
from simrl.wm.env_control import CallControl, passes

RETRY_SEED_STRIDE = 7919
"""Seed offset between compliance re-samples (parse re-samples add 1, 2, ... on top)."""


def add_notes(into: dict[str, Any], notes: dict[str, Any]) -> None:
    """Merge step-info ``notes`` into ``into``: integer counts add up, other values replace."""
    for k, v in notes.items():
        into[k] = into.get(k, 0) + v if isinstance(v, int) and not isinstance(v, bool) else v


class Predictor:
    """A world-model backend behind the response cache, retries, parse re-samples and the leakage guard.

    Args:
        backend: the world model.
        cache: the response cache (``ResponseCache.off()``: none).
        max_parse_retries: re-samples of an output without a prediction block before marking it.
        stats: the environment's counters, updated in place: ``calls``, ``parse_retries``, ``unparsed``, ``control_retries``.
    """

    def __init__(self, backend: WorldModelBackend, cache: ResponseCache, *, max_parse_retries: int,
                 stats: dict[str, int]) -> None:
        self.backend, self.cache, self.stats = backend, cache, stats
        self.max_parse_retries = max_parse_retries

    async def predict(self, messages: list[dict[str, Any]], sampling: Sampling,
                      ctl: CallControl) -> tuple[str, dict[str, Any]]:
        """The guarded prediction of one call, re-sampled while it fails the control check (if any).

        Returns ``(text, notes)``; notes add ``control_attempts`` (samples taken, >= 1) and, with a
        check, ``complied``. Raises BackendError when the world model fails.
        """
        text, notes = await self.sample(messages, sampling, ctl.text)
        attempts = 1
        while ctl.check is not None and not passes(ctl.check, text) and attempts <= ctl.retries:
            self.stats["control_retries"] += 1
            resample = sampling.model_copy(update={
                "temperature": max(sampling.temperature, 0.6),
                "seed": (sampling.seed or 0) + RETRY_SEED_STRIDE * attempts})
            text, more = await self.sample(messages, resample, ctl.text)
            attempts += 1
            add_notes(notes, more)
        notes["control_attempts"] = attempts
        if ctl.check is not None:
            notes["complied"] = passes(ctl.check, text)
        return text, notes

    async def sample(self, messages: list[dict[str, Any]], sampling: Sampling,
                     control: str | None) -> tuple[str, dict[str, Any]]:
        """One guarded prediction: re-sampled ``max_parse_retries`` times without a prediction block, then marked."""
        notes: dict[str, Any] = {}
        for attempt in range(self.max_parse_retries + 1):
            raw = await self.generate(messages, sampling)
            predicted = prompts.parse_prediction(raw)
            if predicted is not None:
                return guard(predicted, notes, control)
            if attempt < self.max_parse_retries:
                self.stats["parse_retries"] += 1
                notes["parse_retries"] = notes.get("parse_retries", 0) + 1
                sampling = sampling.model_copy(update={"temperature": max(sampling.temperature, 0.6),
                                                       "seed": (sampling.seed or 0) + attempt + 1})
        self.stats["unparsed"] += 1
        notes["unparsed"] = True
        return guard(prompts.strip_think(raw), notes, control)

    async def generate(self, messages: list[dict[str, Any]], sampling: Sampling) -> str:
        """The raw completion: from the cache, else from the backend (one call; the backend retries
        transient failures itself).

        Raises:
            BackendError: the backend failed (any other exception is wrapped as a non-retryable one).
        """
        backend = self.backend
        key = cache_key(backend.name, backend.model, messages, sampling)
        cached = self.cache.get(key)  # replay mode: a miss raises a non-retryable BackendError
        if cached is not None:
            return cached
        self.stats["calls"] += 1
        try:
            text = await backend.generate(messages, sampling)
        except BackendError:
            raise
        except Exception as err:  # noqa: BLE001 - a backend bug must not end the run either
            raise BackendError(f"{type(err).__name__}: {err}", retryable=False) from err
        self.cache.put(key, text, backend.name, backend.model)
        return text


def guard(text: str, notes: dict[str, Any], control: str | None) -> tuple[str, dict[str, Any]]:
    """Remove prediction lines that echo the world model's instruction blocks (leakage guard).

    A line goes when it holds a block header (facts, control), ``Reference answer:`` /
    ``Target query:``, or one whole line (8+ characters) of the call's control instruction.
    Adds ``redacted_lines`` (how many went) to ``notes`` when any did.
    """
    markers = [prompts.FACTS_HEADER, prompts.CONTROL_HEADER, "Reference answer:", "Target query:"]
    markers += [ln.strip() for ln in (control or "").splitlines() if len(ln.strip()) >= 8]
    lines = text.splitlines()
    kept = [ln for ln in lines if not any(m in ln for m in markers)]
    if len(kept) != len(lines):
        notes["redacted_lines"] = len(lines) - len(kept)
    return "\n".join(kept), notes
