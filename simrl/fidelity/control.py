"""Control compliance of world models: the share of control instructions a model obeys by itself.

Controlled simulation asks the world model, in its input, to produce a perturbation (a partial
response, a server error, an empty result, ...) and checks the prediction with the perturbation's own
:meth:`~simrl.perturb.taxonomy.Perturbation.complies`; the world-model environment falls back to
injecting the perturbation in code when it does not comply. This module measures the first part,
*compliance without the fallback*, on real transitions:

1. ``n`` transitions (drawn with ``random.Random(seed)``) each get a perturbation that fits the call,
   chosen as ``simrl wm data`` chooses its variants (:func:`simrl.wm.data.pick_variant`: the schedule's
   types and targets, or every recoverable type; one that changes the real observation and whose own
   check accepts the perturbed one);
2. each LLM backend predicts the observation from the real history and the action with the control
   instruction appended (:meth:`Transition.messages(control=...) <simrl.wm.transitions.Transition.messages>`),
   through the response cache; the prediction goes through the environment's leakage guard
   (:class:`simrl.wm.leak_guard.LeakGuard`: lines that echo the instruction are removed), then the check
   runs on a fresh context with the same seeded details, as the environment checks it;
3. an answer without a ``<predicted_observation>`` block counts as not complied (``unparsed``); a
   failed call is left out (``failed``). The baselines (repeat-previous, empty) are checked too, as the
   floor a model must beat.

Before/after a fine-tuning (``simrl wm train``) this is the compliance gained as a trained skill.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simrl.perturb.schedule import Schedule
from simrl.wm.transitions import Transition


def control_cases(transitions: Sequence[Transition], n: int, schedule: Schedule | None,
                  seed: int) -> list[tuple[Transition, Any, str]]:
    """Up to ``n`` ``(transition, perturbation, instruction)`` cases (transitions a schedule already
    perturbed when recorded are not used)."""
    from simrl.wm.data import pick_variant

    rng = random.Random(seed)
    clean = [t for t in transitions if t.perturbation is None]
    order = list(range(len(clean)))
    rng.shuffle(order)
    cases = []
    for i in order:
        if len(cases) >= n:
            break
        picked = pick_variant(clean[i], rng, schedule, seed)
        if picked is not None:
            cases.append((i, clean[i], picked[0], picked[1]))
    return [(t, p, text) for _, t, p, text in sorted(cases, key=lambda c: c[0])]


def _check(t: Transition, p: Any, text: str, seed: int) -> bool:
    from simrl.wm.data import variant_context
    from simrl.wm.env_control import passes

    ctx = variant_context(t, p.kind.value, seed)
    return passes(lambda x: p.complies(x, ctx), text)


async def _predict(label: str, backend: Any, t: Transition, p: Any, instruction: str, config: Any, cache: Any,
                   seed: int) -> dict[str, Any]:
    from simrl.fidelity.predict import generate
    from simrl.wm.backend import BackendError
    from simrl.wm.leak_guard import Secrets, call_guard
    from simrl.wm.prompts import parse_prediction
    from simrl.wm.transitions import called_tools_system

    row = {"backend": label, "domain": t.domain, "trajectory": t.trajectory, "turn_idx": t.turn_idx,
           "perturbation": p.kind.value, "instruction": instruction}
    messages = t.messages(control=instruction)
    if config.tools == "called":
        messages[0] = {"role": "system", "content": called_tools_system(t, config.world)}
    try:
        raw = await generate(backend, messages, config.sampling, cache)
    except BackendError as err:
        return row | {"error": f"{label} failed: {err}"}
    predicted = parse_prediction(raw)
    if predicted is None:
        return row | {"unparsed": True, "complied": False, "raw": raw[:2000]}
    shown, _ = call_guard(Secrets(), instruction, {}).check(predicted)  # the control instruction's echo goes
    return row | {"prediction": shown[:4000], "complied": _check(t, p, shown, seed)}


async def run_compliance(transitions: Sequence[Transition], config: Any, out_dir: Path, *, n: int,
                         schedule: Schedule | None = None, seed: int = 0) -> dict[str, Any]:
    """Measure every LLM backend's and baseline's compliance on ``n`` perturbed transitions.

    Args:
        transitions: real transitions (held-out ones, for a before/after comparison).
        config: the evaluation's :class:`~simrl.fidelity.evaluate.EvalConfig` (backends, sampling, cache).
        out_dir: ``control.jsonl`` (one row per prediction) is written here.
        n: how many perturbed transitions.
        schedule: whose types and targets the perturbations use (None: every recoverable type).
        seed: seed of the draws and of the perturbations' details.

    Returns:
        ``{label: {"n", "complied", "compliance" (0-1, None without cases), "unparsed", "failed",
        "by_type": {kind: {"n", "complied"}}}}``, plus ``"_cases": {kind: count}``.
    """
    from collections import Counter

    from simrl.fidelity.evaluate import BASELINES
    from simrl.fidelity.predict import baseline_prediction
    from simrl.wm.factory import shared_backend, shared_cache

    cases = control_cases(transitions, n, schedule, seed)
    cache = shared_cache(config.cache)
    gate = asyncio.Semaphore(config.concurrency)
    rows: list[dict[str, Any]] = []
    for label in config.names:
        if label in BASELINES:
            rows += [{"backend": label, "domain": t.domain, "trajectory": t.trajectory, "turn_idx": t.turn_idx,
                      "perturbation": p.kind.value, "instruction": text,
                      "complied": _check(t, p, baseline_prediction(label, t), seed)} for t, p, text in cases]
            continue
        if config.kind(label) == "oracle":
            continue
        backend = shared_backend(config.kind(label), **config.backend_options.get(label, {}))

        async def one(t: Transition, p: Any, text: str, backend: Any = backend, label: str = label) -> dict:
            async with gate:
                return await _predict(label, backend, t, p, text, config, cache, seed)

        rows += await asyncio.gather(*(one(t, p, text) for t, p, text in cases))
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "control.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    summary: dict[str, Any] = {"_cases": dict(Counter(p.kind.value for _, p, _ in cases))}
    for label in dict.fromkeys(r["backend"] for r in rows):
        summary[label] = summarise_compliance([r for r in rows if r["backend"] == label])
    return summary


def wilson(k: int, n: int, level: float = 0.95) -> list[float] | None:
    """``[low, high]``: the Wilson score interval of the share ``k / n`` (0-1; None when ``n`` is 0).

    Wilson (1927); scipy's ``binomtest(k, n).proportion_ci(method="wilson")``.

    >>> wilson(0, 3)
    [0.0, 0.5615]
    """
    if n == 0:
        return None
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def summarise_compliance(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, the share complied and its 95% Wilson interval (``ci``) of one predictor's rows (failed rows
    left out of the share)."""
    done = [r for r in rows if "error" not in r]
    by_type: dict[str, dict[str, int]] = {}
    for r in done:
        entry = by_type.setdefault(r["perturbation"], {"n": 0, "complied": 0})
        entry["n"] += 1
        entry["complied"] += bool(r.get("complied"))
    complied = sum(bool(r.get("complied")) for r in done)
    return {"n": len(done), "complied": complied, "compliance": round(complied / len(done), 4) if done else None,
            "ci": wilson(complied, len(done)),
            "unparsed": sum(bool(r.get("unparsed")) for r in done), "failed": len(rows) - len(done),
            "by_type": dict(sorted(by_type.items()))}


def markdown(summary: dict[str, Any]) -> str:
    """A markdown table: one row per perturbation type, predictors as columns (complied / n)."""
    names = [n for n in summary if not n.startswith("_")]
    kinds = sorted(summary.get("_cases", {}))
    lines = ["## Control compliance (complied / n, without the inject fallback)", "",
             "| perturbation | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for kind in kinds:
        cells = [summary[n]["by_type"].get(kind, {}) for n in names]
        lines.append(f"| {kind} | " + " | ".join(f"{c.get('complied', 0)}/{c.get('n', 0)}" for c in cells) + " |")
    shares = ["-" if summary[n]["compliance"] is None else f"{100 * summary[n]['compliance']:.1f}%" for n in names]
    lines.append("| **all** | " + " | ".join(shares) + " |")
    cis = ["-" if not summary[n].get("ci") else f"[{100 * summary[n]['ci'][0]:.1f}, {100 * summary[n]['ci'][1]:.1f}]"
           for n in names]
    lines.append("| 95% interval (Wilson) | " + " | ".join(cis) + " |")
    lines.append("| unparsed | " + " | ".join(str(summary[n]["unparsed"]) for n in names) + " |")
    return "\n".join(lines) + "\n"
