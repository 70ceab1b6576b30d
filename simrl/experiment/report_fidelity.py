"""Each world model's held-out fidelity beside the held-out success of the policy trained in it.

A world_model arm may name its ``simrl wm eval`` result (``Arm.fidelity``: ``FOLDER#LABEL``, the folder's
``scores.json`` and the world model's label in it). :func:`read_fidelity` reads it when the ablation
reports (the ``fidelity`` of the arm's report entry); :func:`fidelity_lines` renders the ``report.md``
section: the rule-based overall fidelity (0-100, AgentWorldBench's five dimensions; its 95% interval over
transitions), the share of unparsed answers, control compliance (95% Wilson interval) and the arm's
held-out success in the real environment (its interval over seeds). Read-only: nothing is measured here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simrl.experiment.report_text import fmt, table
from simrl.experiment.stats import Interval


def read_fidelity(spec: str) -> dict[str, Any]:
    """``{source, label, overall, ci, n, unparsed, compliance}`` from ``FOLDER#LABEL``; ``{source, missing}``
    (why) when the file or the label is not there (the report says so instead of failing).

    ``compliance``: ``{complied, n, ci}`` when that evaluation measured it (``--perturb``), else None.
    """
    folder, _, label = spec.rpartition("#")
    path = Path(folder)
    path = path / "scores.json" if path.suffix != ".json" else path
    if not path.is_file():
        return {"source": spec, "missing": f"no {path} (run `simrl wm eval ... --out {path.parent}` first)"}
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return {"source": spec, "missing": f"{path} does not read as JSON ({err})"}
    entry = scores.get(label) if isinstance(scores, dict) else None
    if not isinstance(entry, dict) or entry.get("overall") is None:
        known = [k for k in scores if not k.startswith("_")] if isinstance(scores, dict) else []
        return {"source": spec, "missing": f"no scored world model {label!r} in {path} (it has: {', '.join(known)})"}
    comp = (scores.get("_compliance") or {}).get(label)
    return {"source": spec, "label": label, "overall": entry["overall"], "ci": (entry.get("ci") or {}).get("overall"),
            "n": entry.get("n"), "unparsed": entry.get("unparsed"),
            "compliance": {k: comp.get(k) for k in ("complied", "n", "ci")} if comp else None}


def _fid(f: Mapping[str, Any] | None) -> list[str]:
    if not f:
        return ["—", "—", "—"]
    if "missing" in f:
        return [f"not measured: {f['missing']}", "—", "—"]
    ci = f" [{f['ci'][0]:.1f}, {f['ci'][1]:.1f}]" if f.get("ci") else ""
    comp = f.get("compliance")
    comp_cell = "—" if not comp else f"{comp['complied']}/{comp['n']}" + (
        f" [{100 * comp['ci'][0]:.0f}%, {100 * comp['ci'][1]:.0f}%]" if comp.get("ci") else "")
    return [f"{f['overall']:.1f}{ci} (n {f['n']})", f"{f['unparsed']}/{f['n']}", comp_cell]


def fidelity_lines(report: Mapping[str, Any]) -> list[str]:
    """The ``report.md`` section (empty when no arm names a fidelity result)."""
    arms = report["arms"]
    if not any(e.get("fidelity") for e in arms.values()):
        return []
    rows = []
    for name, e in arms.items():
        f = e.get("fidelity")
        cells = ["the real environment (reference)", "—", "—"] if e.get("world_model") == "real" else _fid(f)
        success = e["metrics"].get("success")
        source = f["source"] if f else "—"
        rows.append([name, e.get("world_model") or "—", *cells, fmt(Interval.from_dict(success)) if success else "—", source])
    return ["## World-model fidelity beside held-out success", "",
            "Fidelity: `simrl wm eval` on held-out transitions (rule-based overall, 0-100, 95% interval over "
            "transitions; an unparsed answer scores as empty); compliance: control instructions obeyed without the "
            "inject fallback (95% Wilson interval). Success: the policy trained in that environment, evaluated in "
            "the real one (95% interval over seeds).", "",
            *table(["arm", "world model", "held-out fidelity", "unparsed", "control compliance",
                     "held-out success", "fidelity source"], rows)]
