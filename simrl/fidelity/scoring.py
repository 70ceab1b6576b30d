"""Rule-based fidelity of a predicted observation against the real one: five dimensions, 0-100.

The dimensions are AgentWorldBench's (QwenLM/Qwen-AgentWorld ``eval/``; docs/design.md §4): format,
factuality, consistency, realism, quality. AgentWorldBench has an LLM judge give each 1-5
(:mod:`simrl.fidelity.judge` does that too); these scorers are deterministic rules over what
:mod:`simrl.fidelity.rules` reads from the texts, per domain (``search``, ``mcp``, ``bfcl``,
``generic``). A prediction equal to the real observation scores 100 on every dimension.

Formulas (``P`` the prediction, ``R`` the real observation, ``H`` the episode's earlier real
observations; ``F1`` is the harmonic mean of precision and recall, 1 when both sides are empty):

* **format** = 100 x (0.5 x [kind(P) = kind(R)] + 0.5 x wellformed(P) x schema(P, R)): the layout kind
  (search results, page, JSON page, JSON object, error line, ...) must match; ``wellformed`` is the
  share of the layout's own rules that ``P`` satisfies (every search item has ``[k] URL``, ``Title:``,
  ``Snippet:``, ``Date:``; a page has ``Title:``, ``URL Source:``, ``Markdown Content:``; a records
  page's items have ids; an MCP error reads ``Error executing tool <name>: ...``); ``schema`` is the
  Jaccard similarity of the JSON key paths of ``P`` and ``R`` (1 when either is not JSON). An empty
  ``P`` has no rules: it is well-formed only where ``R`` is empty too.
* **factuality** = 100 x (0.7 x F1(facts(P), facts(R)) + 0.3 x F1(tokens(P), tokens(R))) where facts are
  URLs, ids, dates, numbers and JSON ``key=value`` leaves (tokens only when neither side has a fact).
  With a world: its facts shown by ``R`` (facts of the task's simulation instruction that ``R``
  contains) must be in ``P``: factuality = (2 x the above + 100 x recall of those facts) / 3.
* **consistency** = 100 x agree / (agree + conflict + missing) over the bindings (a URL's title and
  date, a record's fields, a name's id, a JSON field's value) that ``P`` shares with ``H``: the
  expected value is the latest one in ``H``, or ``R``'s where ``R`` changes it (a write); ``missing``
  counts bindings ``R`` repeats from ``H`` that ``P`` leaves out. 100 when there is nothing to compare.
* **realism** = 100 when the status class (success, error, empty, partial) of ``P`` equals ``R``'s
  (two errors of a different family, e.g. a 404 for a tool error, score 50), else 0; also 0 when ``P``
  is free text (no layout of the domain's tools) where ``R`` is not.
* **quality** = 100 x mean(length ratio, unit ratio, recall of ``R``'s tokens in ``P``); ratios are
  min/max of character counts and of structural units (search items, JSON leaves, text lines).

The sample's overall score is the mean of the five.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simrl.fidelity.bindings import bindings
from simrl.fidelity.rules import (
    domain_of,
    error_family,
    facts,
    json_keys,
    layout,
    status_class,
    tokens,
    units,
)
from simrl.world.schema import SimulationInstruction

DIMENSIONS = ("format", "factuality", "consistency", "realism", "quality")
"""AgentWorldBench's five fidelity dimensions, in its order."""


class DimensionScores(BaseModel):
    """One prediction's scores, 0-100 each (higher is more faithful)."""

    model_config = ConfigDict(frozen=True)

    format: float = Field(ge=0, le=100)
    factuality: float = Field(ge=0, le=100)
    consistency: float = Field(ge=0, le=100)
    realism: float = Field(ge=0, le=100)
    quality: float = Field(ge=0, le=100)

    @property
    def overall(self) -> float:
        """Mean of the five dimensions."""
        return sum(getattr(self, d) for d in DIMENSIONS) / len(DIMENSIONS)


def set_f1(pred: set[str], real: set[str]) -> float:
    """F1 of two sets (1.0 when both are empty, 0.0 when only one is).

    >>> set_f1({"a", "b"}, {"a"})
    0.6666666666666666
    """
    if not pred and not real:
        return 1.0
    hit = len(pred & real)
    return 0.0 if hit == 0 else 2 * hit / (len(pred) + len(real))


def bag_f1(pred: Counter[str], real: Counter[str]) -> float:
    """F1 of two multisets (token counts), 1.0 when both are empty."""
    if not pred and not real:
        return 1.0
    hit = sum((pred & real).values())
    return 0.0 if hit == 0 else 2 * hit / (sum(pred.values()) + sum(real.values()))


def _ratio(a: float, b: float) -> float:
    return 1.0 if max(a, b) == 0 else min(a, b) / max(a, b)


def world_facts(instruction: SimulationInstruction | None) -> set[str]:
    """The strong facts (:func:`~simrl.fidelity.rules.facts`) of a task's simulation instruction:
    its facts, reference answer and page URLs (empty without an instruction)."""
    if instruction is None:
        return set()
    text = "\n".join([*instruction.facts, instruction.reference_answer, *instruction.pages])
    return facts(text)


def score_format(pred: str, real: str, domain: str) -> float:
    """Layout kind match, well-formedness and JSON schema agreement (module docstring), 0-100."""
    kind_p, checks = layout(pred, domain)
    kind_r, _ = layout(real, domain)
    keys_p, keys_r = json_keys(pred), json_keys(real)
    schema = 1.0 if keys_p is None or keys_r is None else jaccard(keys_p, keys_r)
    if kind_p == kind_r == "text":  # the real tool printed free text too: nothing more to hold it to
        wellformed = 1.0
    else:
        wellformed = sum(checks) / len(checks) if checks else float(kind_p == kind_r)
    return 100 * (0.5 * (kind_p == kind_r) + 0.5 * wellformed * schema)


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity |a & b| / |a | b| (1.0 when both are empty)."""
    return 1.0 if not (a or b) else len(a & b) / len(a | b)


def score_factuality(pred: str, real: str, world: set[str] | None = None) -> float:
    """Fact- and token-level agreement with the real observation, and with the world's facts it shows."""
    fp, fr = facts(pred), facts(real)
    token_f1 = bag_f1(tokens(pred), tokens(real))
    against_real = token_f1 if not (fp or fr) else 0.7 * set_f1(fp, fr) + 0.3 * token_f1
    shown = (world or set()) & fr
    if not shown:
        return 100 * against_real
    return 100 * (2 * against_real + len(shown & fp) / len(shown)) / 3


def score_consistency(pred: str, real: str, history: Sequence[str]) -> float:
    """Agreement of the prediction's ids, URLs and values with the episode's earlier real observations."""
    known: dict[tuple[str, str], str] = {}
    for earlier in history:
        known.update(bindings(earlier))
    if not known:
        return 100.0
    in_real = {k: v for k, v in bindings(real).items() if k in known}
    expected = known | in_real  # a value the real observation changes (a write) is expected at its new value
    shared = {k: v for k, v in bindings(pred).items() if k in known}
    agree = sum(v == expected[k] for k, v in shared.items())
    conflict = len(shared) - agree
    missing = len(set(in_real) - set(shared))
    total = agree + conflict + missing
    return 100.0 if total == 0 else 100 * agree / total


def score_realism(pred: str, real: str, domain: str) -> float:
    """100 when the status classes match (errors: of the same family; else 50), 0 otherwise or when the
    prediction is free text where the real tool answers in a layout (no real tool prints it)."""
    sp, sr = status_class(pred, domain), status_class(real, domain)
    if sp != sr or (layout(pred, domain)[0] == "text" and layout(real, domain)[0] != "text"):
        return 0.0
    if sp == "error" and error_family(pred) != error_family(real):
        return 50.0
    return 100.0


def score_quality(pred: str, real: str, domain: str) -> float:
    """Length and completeness: mean of the length ratio, the unit ratio and the real tokens recalled."""
    tr, tp = tokens(real), tokens(pred)
    recall = 1.0 if not tr else sum((tp & tr).values()) / sum(tr.values())
    return 100 * (_ratio(len(pred.strip()), len(real.strip())) + _ratio(units(pred, domain), units(real, domain))
                  + recall) / 3


def score_prediction(pred: str, real: str, *, domain: str = "generic", history: Sequence[str] = (),
                     world: set[str] | None = None) -> DimensionScores:
    """The five rule-based scores of one predicted observation.

    Args:
        pred: the predicted observation text (``""`` for an unparsed or missing prediction).
        real: the real observation text (gold).
        domain: ``search``, ``mcp``, ``bfcl`` or any other name (scored with the generic rules).
        history: the episode's earlier REAL observations, oldest first.
        world: the world's facts for the task (:func:`world_facts`), or None.
    """
    domain = domain_of(domain)
    return DimensionScores(format=score_format(pred, real, domain), factuality=score_factuality(pred, real, world),
                           consistency=score_consistency(pred, real, history),
                           realism=score_realism(pred, real, domain), quality=score_quality(pred, real, domain))


CI_LEVEL = 0.95
"""Confidence level of the intervals over transitions in ``scores.json``."""


def t_interval(values: Sequence[float], level: float = CI_LEVEL, bounds: tuple[float, float] = (0.0, 100.0)
               ) -> list[float] | None:
    """``[low, high]``: the Student-t interval of the mean of ``values`` (scores of single transitions),
    clipped to ``bounds`` (the scores' range, 0-100).

    Transitions are treated as independent draws (those of one episode are not quite: the interval is a
    lower bound on the uncertainty). None for fewer than two values; ``[m, m]`` when all are equal.

    >>> t_interval([40.0, 60.0, 50.0])  # s = 10, t(0.975, 2) = 4.3027: 50 -+ 24.84
    [25.16, 74.84]
    >>> t_interval([0.0, 100.0, 50.0])  # 50 -+ 124.2, clipped
    [0.0, 100.0]
    """
    if len(values) < 2:
        return None
    from simrl.experiment.stats import mean_ci

    ci = mean_ci(values, level)  # the same Student-t interval as the ablation report's (scipy.stats)
    return [round(max(bounds[0], ci.low), 2), round(min(bounds[1], ci.high), 2)]


def _mean_scores(rows: Sequence[dict[str, float]], keys: Iterable[str]) -> dict[str, Any]:
    keys = list(keys)
    out: dict[str, Any] = {k: round(sum(r[k] for r in rows) / len(rows), 2) if rows else None for k in keys}
    return out | {"n": len(rows), "ci": {k: t_interval([r[k] for r in rows]) for k in keys}}


def aggregate(rows: Sequence[tuple[str, dict[str, float]]], keys: Sequence[str] = (*DIMENSIONS, "overall")
              ) -> dict[str, Any]:
    """Means over samples: ``{dim: mean, ..., "n": count, "ci": {dim: [low, high] or None}, "by_domain":
    {domain: {dim: mean, ..., "n", "ci"}}}``; ``ci``: the 95% Student-t interval over samples (:func:`t_interval`).

    Args:
        rows: ``(domain, {dimension: score})`` per sample (scores 0-100).
        keys: the score keys to average.
    """
    out = _mean_scores([r for _, r in rows], keys)
    domains = sorted({d for d, _ in rows})
    out["by_domain"] = {d: _mean_scores([r for dd, r in rows if dd == d], keys) for d in domains}
    return out
