"""An LLM judge of world-model fidelity, AgentWorldBench style, through any OpenAI-compatible endpoint.

AgentWorldBench (QwenLM/Qwen-AgentWorld ``eval/``; docs/design.md §4) has a judge model compare a
predicted observation with the real one on five dimensions (format, factuality, consistency,
realism, quality), each an integer 1-5; a dimension's score is normalised to 0-100 as
``(x - 1) / 4 * 100`` and a sample's score is the mean of its five. The prompt here is our own
wording: the judge sees the episode's last turns (actions and real observations), the current
action, the real observation (reference) and the prediction, and answers one JSON object
``{"format": 1-5, "factuality": ..., "consistency": ..., "realism": ..., "quality": ..., "reason": "..."}``.

Reliability: requests go through :class:`~simrl.wm.openai_backend.OpenAIBackend`, whose ``openai``
SDK retries a transient failure (timeout, refused connection, 408/409/429/5xx; ``Retry-After``
honoured) up to ``max_retries`` times; an answer without five valid scores is asked again, up to
``max_retries`` times. What still fails raises :class:`JudgeError`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from simrl.config import ENDPOINT_RETRIES
from simrl.errors import SimrlError
from simrl.fidelity.scoring import DIMENSIONS
from simrl.wm.backend import BackendError, Sampling

JUDGE_SYSTEM = """\
You are a strict judge of environment simulators. A world model predicted the observation a tool
environment returns for an agent's action. Compare the PREDICTED observation with the REAL one
(the reference) and rate it on five dimensions, each an integer from 1 (very poor) to 5 (matches
the real observation):

- format: layout and structure (fields, JSON schema, result layout) match what the tool returns.
- factuality: the stated facts (names, ids, numbers, dates, URLs, values) agree with the real observation.
- consistency: agreement with everything earlier turns of the episode established (ids, state, values).
- realism: it is what a real tool would plausibly return, including the outcome class (success, error,
  empty result, partial result).
- quality: completeness and level of detail compared with the real observation.

Answer with one JSON object and nothing else:
{"format": <1-5>, "factuality": <1-5>, "consistency": <1-5>, "realism": <1-5>, "quality": <1-5>, "reason": "<one sentence>"}"""

_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_PAIR = re.compile(r"\b(format|factuality|consistency|realism|quality)\b\W{0,4}([1-5](?:\.0)?)\b", re.IGNORECASE)


class JudgeError(Exception):
    """The judge gave no valid scores after its retries (the message says why)."""


class JudgeScores(BaseModel):
    """One judged sample.

    Attributes:
        raw: the judge's integer scores, 1-5, per dimension.
        scores: the same normalised to 0-100, ``(x - 1) / 4 * 100``.
        overall: mean of ``scores``.
        reason: the judge's one-sentence reason ("" when it gave none).
        attempts: requests it took (1 + retries).
    """

    model_config = ConfigDict(frozen=True)

    raw: dict[str, int]
    scores: dict[str, float]
    overall: float
    reason: str = ""
    attempts: int = 1


def normalise(score: float) -> float:
    """A 1-5 judge score on the 0-100 scale.

    >>> normalise(1), normalise(3), normalise(5)
    (0.0, 50.0, 100.0)
    """
    return (score - 1) / 4 * 100


def parse_judge(text: str) -> tuple[dict[str, int], str] | None:
    """The five 1-5 scores (and the reason) in a judge's answer, or None when they are not all there.

    Reads the last JSON object holding all five dimensions (``<think>`` blocks and code fences
    around it are fine; keys in any case); failing that, ``dimension: N`` pairs in the text.

    >>> parse_judge('<think>..</think>```json\\n{"Format": 5, "factuality": 4, "consistency": 3, '
    ...             '"realism": 2, "quality": "1", "reason": "ok"}\\n```')
    ({'format': 5, 'factuality': 4, 'consistency': 3, 'realism': 2, 'quality': 1}, 'ok')
    """
    text = re.sub(r"<think>.*?</think>", "", text or "", flags=re.DOTALL)
    for block in reversed(_OBJECT.findall(text)):
        try:
            obj = json.loads(block)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        low = {str(k).lower().strip(): v for k, v in obj.items()}
        scores = {d: _score(low.get(d)) for d in DIMENSIONS}
        if all(v is not None for v in scores.values()):
            return scores, str(low.get("reason", "") or "")  # type: ignore[return-value]
    pairs = {k.lower(): int(float(v)) for k, v in _PAIR.findall(text)}
    return (pairs, "") if all(d in pairs for d in DIMENSIONS) and len(pairs) == len(DIMENSIONS) else None


def _score(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number == int(number) and 1 <= number <= 5 else None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n...[{len(text) - limit} more characters]"


def judge_messages(*, domain: str, history: list[tuple[str, str]], action: str, real: str, predicted: str,
                   max_history: int = 3, max_chars: int = 4000) -> list[dict[str, str]]:
    """The judge's chat: the system rubric, then one user message with the context and both observations.

    Args:
        domain: the environment's domain (search, mcp, bfcl, ...).
        history: the episode's earlier ``(action message, real observation)`` pairs; the last
            ``max_history`` are shown.
        action: the current action message.
        real, predicted: the real and the predicted observation.
        max_chars: each observation is cut to this many characters.
    """
    lines = [f"Domain: {domain}", ""]
    if history:
        lines.append(f"Earlier turns of the episode (last {min(len(history), max_history)} of {len(history)}):")
        for act, obs in history[-max_history:]:
            lines += [act, "Real observation:", _clip(obs, max_chars // 2), ""]
    lines += ["Current action:", action, "", "REAL observation:", _clip(real, max_chars), "",
              "PREDICTED observation:", _clip(predicted, max_chars) or "(empty)", "",
              "Rate the PREDICTED observation. Answer with the JSON object only."]
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


class Judge:
    """Scores predictions with an LLM behind an OpenAI-compatible endpoint.

    Args:
        base_url: the endpoint's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the judge model id.
        api_key: bearer token (default ``$OPENAI_API_KEY`` or ``EMPTY``).
        max_retries: the SDK's retries of a transient failure, and the re-asks of an unparseable
            answer (so at most ``1 + max_retries`` answers per sample).
        timeout: seconds one request may take.
        max_tokens: the judge's answer budget (room for a ``<think>`` block on reasoning models).
        max_concurrency: requests in flight at once.

    Raises:
        SimrlError: an empty base URL or model, or negative retries.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, max_retries: int = ENDPOINT_RETRIES,
                 timeout: float = 120.0, max_tokens: int = 1024, max_concurrency: int = 16) -> None:
        if not base_url or not model:
            raise SimrlError("the LLM judge needs --judge-base-url http://HOST:PORT/v1 and --judge-model NAME")
        if max_retries < 0:
            raise SimrlError(f"judge retries must be >= 0, got {max_retries}")
        from simrl.wm.openai_backend import OpenAIBackend

        self.backend = OpenAIBackend(base_url, model, api_key, timeout=timeout, max_concurrency=max_concurrency,
                                     max_retries=max_retries)
        self.model, self.max_retries = model, max_retries
        self.sampling = Sampling(temperature=0.0, max_tokens=max_tokens)
        self.stats = {"requests": 0, "unparsed": 0, "failures": 0}  # answers asked for (SDK retries: backend.retries)

    async def score(self, messages: list[dict[str, str]]) -> JudgeScores:
        """Judge one sample (messages from :func:`judge_messages`).

        Raises:
            JudgeError: the endpoint failed (after the SDK's retries), or no valid scores after
                ``max_retries`` re-asks.
        """
        problem = ""
        for attempt in range(self.max_retries + 1):
            self.stats["requests"] += 1
            try:
                text = await self.backend.generate(messages, self.sampling)
            except BackendError as err:
                problem = str(err)
                break
            parsed = parse_judge(text)
            if parsed is not None:
                raw, reason = parsed
                scores = {d: normalise(raw[d]) for d in DIMENSIONS}
                return JudgeScores(raw=raw, scores=scores, overall=sum(scores.values()) / len(scores),
                                   reason=reason, attempts=attempt + 1)
            self.stats["unparsed"] += 1
            problem = f"no five 1-5 scores in the judge's answer: {text[:200]!r}"
        self.stats["failures"] += 1
        raise JudgeError(f"judge {self.model}: {problem}")

    async def close(self) -> None:
        """Close the endpoint client (idempotent)."""
        await self.backend.close()
