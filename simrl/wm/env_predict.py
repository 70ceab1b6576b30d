"""The guarded world-model prediction of one tool call (the reliability half of :mod:`simrl.wm.env`).

:class:`Predictor` turns a call's messages into an observation: the raw completion from the response
cache or the backend (which retries transient failures itself: the ``openai`` SDK's retries),
re-sampled when it has no prediction block (then marked ``unparsed``), checked by the call's
:class:`~simrl.wm.leak_guard.LeakGuard` (hidden text removed or the observation refused), and
re-sampled while it fails a control check or leaked. The policy never sees what is removed here. The rules
(re-sample temperatures and seeds, the notes put in a step's ``info``) are described in
:mod:`simrl.wm.env`.
"""

from __future__ import annotations

from typing import Any

from simrl.errors import SimrlError
from simrl.wm import prompts
from simrl.wm.backend import BackendError, Sampling, WorldModelBackend
from simrl.wm.cache import ResponseCache, cache_key
from simrl.wm.env_control import CallControl, passes
from simrl.wm.leak_guard import LeakGuard, Secrets

RETRY_SEED_STRIDE = 7919
"""Seed offset between compliance re-samples (parse re-samples add 1, 2, ... on top)."""
MAX_OBSERVATION_CHARS = 64_000
"""Default cap on a predicted observation (characters): about twice the longest real observation
(``web_search`` with 20 queries x 10 results); the rest is cut, and the step's info records it."""
TRUNCATION_NOTE = "\n[observation cut at {n} characters]"


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
        stats: the environment's counters, updated in place: ``calls``, ``parse_retries``,
            ``unparsed``, ``control_retries``.
        max_observation_chars: a prediction longer than this is cut (before the leakage guard) and
            the step's info gets ``observation_truncated`` (count) and ``observation_chars`` (length
            before the cut).

    Raises:
        SimrlError: ``max_observation_chars`` below 1.
    """

    def __init__(self, backend: WorldModelBackend, cache: ResponseCache, *, max_parse_retries: int,
                 stats: dict[str, int], max_observation_chars: int = MAX_OBSERVATION_CHARS) -> None:
        if max_observation_chars < 1:
            raise SimrlError(f"max_observation_chars must be >= 1, got {max_observation_chars}")
        self.max_observation_chars = max_observation_chars
        self.backend, self.cache, self.stats = backend, cache, stats
        self.max_parse_retries = max_parse_retries

    async def predict(self, messages: list[dict[str, Any]], sampling: Sampling, ctl: CallControl,
                      guard: LeakGuard | None = None) -> tuple[str, dict[str, Any]]:
        """The guarded prediction of one call, re-sampled while it fails the control check (if any).

        Args:
            guard: the call's leakage guard (default: one that knows only ``ctl.text``).

        Returns ``(text, notes)``; notes add ``control_attempts`` (samples taken, >= 1) and, with a
        check, ``complied`` (False when the last sample leaked: an observation that had to be
        cleaned did not comply). Raises BackendError when the world model fails.
        """
        guard = guard or LeakGuard(Secrets(control=ctl.text))
        text, notes = await self.sample(messages, sampling, guard)
        leaked, attempts = bool(notes.get("leaked")), 1

        def complied() -> bool:
            return ctl.check is not None and not leaked and passes(ctl.check, text)

        while ctl.check is not None and not complied() and attempts <= ctl.retries:
            self.stats["control_retries"] += 1
            resample = sampling.model_copy(update={
                "temperature": max(sampling.temperature, 0.6),
                "seed": (sampling.seed or 0) + RETRY_SEED_STRIDE * attempts})
            text, more = await self.sample(messages, resample, guard)
            leaked, attempts = bool(more.get("leaked")), attempts + 1
            add_notes(notes, more)
        notes["control_attempts"] = attempts
        if ctl.check is not None:
            notes["complied"] = complied()
        return text, notes

    async def sample(self, messages: list[dict[str, Any]], sampling: Sampling,
                     guard: LeakGuard) -> tuple[str, dict[str, Any]]:
        """One guarded prediction: re-sampled ``max_parse_retries`` times without a prediction block, then marked."""
        notes: dict[str, Any] = {}
        for attempt in range(self.max_parse_retries + 1):
            raw = await self.generate(messages, sampling)
            predicted = prompts.parse_prediction(raw)
            if predicted is not None:
                return await self._checked(guard, predicted, notes)
            if attempt < self.max_parse_retries:
                self.stats["parse_retries"] += 1
                notes["parse_retries"] = notes.get("parse_retries", 0) + 1
                sampling = sampling.model_copy(update={"temperature": max(sampling.temperature, 0.6),
                                                       "seed": (sampling.seed or 0) + attempt + 1})
        self.stats["unparsed"] += 1
        notes["unparsed"] = True
        return await self._checked(guard, prompts.strip_think(raw), notes)

    async def _checked(self, guard: LeakGuard, text: str, notes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``text`` capped at ``max_observation_chars``, then through the leakage guard; notes added."""
        if len(text) > self.max_observation_chars:
            notes["observation_truncated"] = notes.get("observation_truncated", 0) + 1
            notes["observation_chars"] = len(text)
            text = text[:self.max_observation_chars] + TRUNCATION_NOTE.format(n=self.max_observation_chars)
        text, found = await guard.acheck(text)
        add_notes(notes, found)
        return text, notes

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


MAX_HISTORY_CHARS = 256_000
"""Default cap on the earlier observations re-sent in a world-model prompt (characters, all turns)."""
ELIDED = "[earlier observation omitted: the episode's history is over {n} characters]"


def bounded_history(history: list[tuple[str, dict[str, Any], str]],
                    max_chars: int) -> tuple[list[tuple[str, dict[str, Any], str]], int]:
    """The history to re-send: the latest observations whose lengths sum to at most ``max_chars``.

    Older observations are replaced by :data:`ELIDED` (the actions stay, so turn numbers hold).

    Returns:
        ``(history, number of observations replaced)``.
    """
    kept, total, elided = [], 0, 0
    for name, args, observation in reversed(history):
        total += len(observation)
        if total > max_chars:
            observation, elided = ELIDED.format(n=max_chars), elided + 1
        kept.append((name, args, observation))
    return kept[::-1], elided
