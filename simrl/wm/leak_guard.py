"""The leakage guard of world-model observations: nothing the policy must not know reaches it.

Every observation a world model predicts (:class:`simrl.wm.env.WorldModelEnv`, through
:class:`simrl.wm.env_predict.Predictor`) passes :meth:`LeakGuard.check` before the policy sees it.
The world model's input holds four kinds of hidden text; each is looked for in the prediction,
line by line, after *normalisation* (Unicode NFKC, case-folded, every run of non-alphanumeric
characters one space, so ``Reference  Answer =`` matches ``reference answer:``):

* ``gold``: the task's gold answers (``qa`` and records ``answer`` + ``aliases``, ``table`` cells);
* ``fact``: the task's simulation instruction (its reference answer, target query and facts);
* ``tool``: the tool definitions (each description line of 20+ characters);
* ``control``: the call's control instruction: any run of :data:`CONTROL_RUN_WORDS` consecutive
  words of it, or a line holding :data:`CONTROL_OVERLAP` of its distinct words of 4+ letters (a
  reworded echo). Quoted spans of the instruction (``'...'``, ``"..."``, backticks) are the output it
  asks for (``'HTTP 429 Too Many Requests'``), so they are not secret;
* ``marker``: a header of the world model's prompt (``# World facts``, ``Reference answer``,
  ``Target query``, ``Control Instruction``, ``Environment Observation``, ``# Tools``, ...).

**The rule for values that may legitimately appear** (a gold answer is often a name the real tool
returns): a gold answer may appear only *where* the real observation of the same call at the same
turn holds it — the ground truth (``reference``: the search index's result, the records' answer on
the episode's shadow copy) — at the same JSON path or in a line of the truth's with the same other
words; anywhere else (a note beside an empty page, an error message, a key name) it is redacted
(:class:`simrl.wm.leak_gold.GoldRule`, whose docstring has the details; without ground truth, ``mcp``
over an arbitrary server, it is held nowhere). A fact or tool description is not a leak when the real
observation shows it anywhere, or the policy has seen it itself (its prompt and the call's arguments).
Values match as whole words only; facts under :data:`MIN_SECRET_CHARS` normalised characters are not
looked for (a gold that short is, when it is a number: ``21``). Control text and prompt headers are
never legitimate.

A line holding any of these is removed (in a JSON observation, a gold value or key is redacted in place
instead). When more than half of the non-blank lines go, or a prompt
header was echoed (``# World facts``, ``**Control Instruction:**``, ``### Turn N``, a tool
definition's ``"type": "function"``: the model is repeating its prompt, whose other lines are not all recognisable), the whole observation is
**refused**: it becomes :data:`REFUSED`. The step's info counts what went (``leak_gold``,
``leak_fact``, ``leak_tool``, ``leak_control``, ``leak_marker``, and their sum ``redacted_lines``:
lines, and JSON values for ``leak_gold``; ``leak_refused``: observations) and sets
``leaked`` True; a controlled call whose prediction leaked is not compliant (re-sampled when retries
are left; ``complied`` False otherwise). Paraphrased facts cannot be told from legitimate content
by text alone and are not caught.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from simrl.memo import by_repr
from simrl.wm.leak_gold import GoldRule

MIN_SECRET_CHARS = 3
"""Shortest gold answer or fact (normalised characters) looked for; every value matches as whole words."""
CONTROL_RUN_WORDS = 6
"""Consecutive words of a control instruction that make a line a leak."""
CONTROL_OVERLAP = 0.6
"""Share of a control instruction's distinct words (4+ letters, at least 5 of them) that makes a line a leak."""
MIN_TOOL_DESCRIPTION = 20
"""Shortest tool description (normalised characters) looked for."""
REFUSED = "Error: the simulated tool returned no usable output for this call."
"""The observation the policy sees when the guard refuses a prediction."""
KINDS = ("gold", "fact", "tool", "control", "marker")

_LABELS = ("reference answer", "target query", "simulation instruction", "pages that hold these facts")
_DUMP_LINES = (" world facts ", " tools ", " output format ", " role ", " rules ", " how the tools answer ", " facts ")
_DUMP_MARKERS = ("control instruction", "environment observation", "predicted observation",
                 "the agent can call these tools", "this world is fictional")
_TURN = re.compile(r"\s*#+\s*turn\s+\d+\s*$", re.IGNORECASE)
_TOOL_JSON = re.compile(r'"type"\s*:\s*"function"')
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`")
_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


@functools.lru_cache(maxsize=4096)
def normalise(text: str) -> str:
    """``text`` NFKC-normalised, case-folded, non-alphanumeric runs as one space, padded with spaces.

    >>> normalise("Reference  ANSWER = 'Ada'!")
    ' reference answer ada '
    """
    flat = _NON_ALNUM.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return f" {flat} " if flat else " "


def gold_strings(gold: Any) -> list[str]:
    """The answer strings of a task's gold (``answer``, ``aliases``, a table's cells); empty for others."""
    out: list[str] = []
    for name in ("answer", "aliases"):
        value = getattr(gold, name, None)
        out += [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]
    for row in getattr(gold, "rows", None) or []:
        out += [v for v in row.values() if isinstance(v, str) and len(normalise(v)) - 2 >= MIN_SECRET_CHARS]
    return out


def tool_texts(tools: list[dict[str, Any]]) -> list[str]:
    """The descriptions in tool definitions (tool and parameter descriptions of 20+ normalised characters)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "description" and isinstance(value, str):
                    found.extend(ln for ln in value.splitlines() if len(normalise(ln)) - 2 >= MIN_TOOL_DESCRIPTION)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(tools)
    return found


_tool_texts_of = by_repr(tool_texts)
""":func:`tool_texts` remembered per tool list (the same at every episode of an environment: :mod:`simrl.memo`)."""


@dataclass
class Secrets:
    """What one call's world model was told that the policy must not see.

    Attributes:
        gold: the task's gold answer strings (:func:`gold_strings`).
        facts: the simulation instruction's reference answer, target query and facts.
        tools: the tool descriptions (:func:`tool_texts`).
        control: the call's control instruction, or None.
        visible: what the policy has seen itself (its prompt, the call's arguments).
    """

    gold: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    control: str | None = None
    visible: str = ""


class LeakGuard:
    """Checks one call's predicted observation against its :class:`Secrets` (rules: module docstring).

    Args:
        secrets: the hidden texts of the call.
        reference: the real observation of the call at this turn (ground truth), or None where there
            is none; what it shows is never a leak.
        fetch: instead of ``reference``, ``await fetch()`` gives it; :meth:`acheck` calls it only when
            a prediction looks like a leak without it (most predictions need no ground-truth call).
    """

    def __init__(self, secrets: Secrets, reference: str | None = None,
                 fetch: Callable[[], Awaitable[str | None]] | None = None) -> None:
        self.secrets, self.fetch = secrets, fetch
        self.runs, self.words = _control_parts(secrets.control)
        self._use(reference)

    def _use(self, reference: str | None) -> None:
        allowed = normalise(" ".join([self.secrets.visible, reference or ""]))
        self.real_lines = {normalise(ln) for ln in (reference or "").splitlines()}
        golds = [normalise(g) for g in self.secrets.gold]
        control = normalise(self.secrets.control or "")
        self.gold = GoldRule(golds, reference, exempt=normalise(f"{self.secrets.visible} {self.secrets.control or ''}"),
                             exempt_short=control, normalise=normalise, min_chars=MIN_SECRET_CHARS)
        values = [(kind, normalise(s)) for kind, items in (("fact", self.secrets.facts), ("tool", self.secrets.tools))
                  for s in items]
        self.values = [(k, s) for k, s in values if len(s) - 2 >= MIN_SECRET_CHARS and s not in allowed
                       and s not in golds]  # the reference answer is a gold: where it may appear is the gold rule's

    async def acheck(self, text: str) -> tuple[str, dict[str, Any]]:
        """:meth:`check`, fetching the real observation first when ``text`` would otherwise leak."""
        checked = self.check(text)
        if not checked[1] or self.fetch is None:
            return checked
        fetch, self.fetch = self.fetch, None
        self._use(await fetch())
        return self.check(text)

    def kind_of(self, line: str, gold: bool = True) -> str | None:
        """The leak kind of one line (``marker``, ``control``, ``gold``, ``fact``, ``tool``), or None
        (``gold`` False: the gold rule is not applied, a JSON observation's golds were redacted in place)."""
        norm = normalise(line)
        if self.dump(line) or any(f" {m} " in norm for m in _LABELS):
            return "marker"
        if any(run in norm for run in self.runs):
            return "control"
        if self.words and len(self.words & set(norm.split())) >= CONTROL_OVERLAP * len(self.words):
            return "control"
        for kind, value in self.values:
            if value in norm:
                return kind
        if gold and self.gold.line_leaks(norm):
            return "gold"
        return None

    def dump(self, line: str) -> bool:
        """Whether ``line`` is a header of the world model's prompt (the model is repeating its prompt)
        that the real observation does not hold (a page may be titled ``# Rules``)."""
        norm = normalise(line)
        if norm in self.real_lines:
            return False
        if line.lstrip().startswith("#") and norm in _DUMP_LINES:
            return True
        return (any(f" {m} " in norm for m in _DUMP_MARKERS) or bool(_TURN.match(line))
                or bool(_TOOL_JSON.search(line)))

    def check(self, text: str) -> tuple[str, dict[str, Any]]:
        """``(text the policy may see, step-info notes)``; notes are empty when nothing leaked."""
        in_json = self.gold.redact_json(text)  # a JSON observation: golds out of place redacted in place
        if in_json is not None:
            text = in_json[0]
        values = in_json[1] if in_json is not None else 0
        lines = text.splitlines()
        kinds = [self.kind_of(ln, gold=in_json is None) for ln in lines]
        if not any(kinds) and not values:
            return text, {}
        removed = sum(k is not None for k in kinds)
        notes: dict[str, Any] = {"leaked": True, "redacted_lines": removed + values}
        for kind in KINDS:
            if (n := kinds.count(kind) + (values if kind == "gold" else 0)) > 0:
                notes[f"leak_{kind}"] = n
        nonblank = sum(bool(ln.strip()) for ln in lines)
        if any(self.dump(ln) for ln in lines) or removed * 2 > nonblank:
            notes["leak_refused"] = 1
            return REFUSED, notes
        return "\n".join(ln for ln, k in zip(lines, kinds) if k is None), notes


def _control_parts(control: str | None) -> tuple[list[str], set[str]]:
    """The word runs and the distinct 4+-letter words of an instruction's unquoted text."""
    if not control:
        return [], set()
    segments = [normalise(seg).split() for seg in _QUOTED.split(control)]
    runs = {" " + " ".join(seg[i:i + CONTROL_RUN_WORDS]) + " " for seg in segments
            for i in range(len(seg) - CONTROL_RUN_WORDS + 1)}
    distinct = {w for seg in segments for w in seg if len(w) >= 4 and not w.isdigit()}
    return sorted(runs), distinct if len(distinct) >= 5 else set()


def visible_text(prompt: str, arguments: dict[str, Any], earlier: Iterable[str] = ()) -> str:
    """What the policy has seen for a call: its prompt, the call's arguments (JSON), earlier text."""
    return "\n".join([prompt, json.dumps(arguments, ensure_ascii=False), *earlier])


def episode_secrets(task: Any, instruction: Any, tools: list[dict[str, Any]]) -> Secrets:
    """The hidden texts of an episode: the task's gold, its simulation instruction, the tool descriptions.

    Args:
        task: the :class:`~simrl.world.schema.Task` (its prompt is visible to the policy).
        instruction: its :class:`~simrl.world.schema.SimulationInstruction`, or None.
        tools: the tool definitions given to the world model.
    """
    facts = [] if instruction is None else [instruction.reference_answer, instruction.target_query,
                                            *instruction.facts]
    return Secrets(gold=gold_strings(task.gold), facts=facts, tools=list(_tool_texts_of(tools)), visible=task.prompt)


def call_guard(episode: Secrets, control: str | None, arguments: dict[str, Any], reference: str | None = None,
               fetch: Callable[[], Awaitable[str | None]] | None = None) -> LeakGuard:
    """The guard of one call: the episode's secrets, the call's control instruction, what the policy sent,
    and the real observation (``reference``, or ``fetch`` to get it when needed)."""
    secrets = Secrets(episode.gold, episode.facts, episode.tools, control,
                      visible_text(episode.visible, arguments))
    return LeakGuard(secrets, reference, fetch)
