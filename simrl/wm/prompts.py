"""World-model prompts in the Qwen-AgentWorld chat layout, and the parser of the model's answer.

Layout (QwenLM/Qwen-AgentWorld ``eval/eval.py`` and ``prompts/``; docs/design.md §4):

* **system**: a domain world-model prompt (our own wording, carried by each environment's world-model adapter:
  :mod:`simrl.envs.prompts`; :data:`GENERIC_PROMPT` otherwise),
  then the tool definitions as a JSON list (OpenAI function format), then the output-format rule, then,
  for fictional worlds, the world's facts from the task's :class:`~simrl.world.schema.SimulationInstruction`
  (target query, reference answer, facts, pages).
* each earlier turn: a **user** message with the action (``### Turn N``, ``**Action:**`` and a fenced
  ``json`` block ``{"name": ..., "arguments": {...}}``) and an **assistant** message with the
  observation (``**Environment Observation:**`` then the raw output);
* the current action is the **last user message**; an optional *control instruction* (a perturbation
  request for the world model, never shown to the policy) is appended to it as its own block.

Order for prefix caching: what every call of a world shares (role, tools, output rule) comes first, then
what the calls of one task share (its facts), then the episode's history, oldest first, then the current
call; so a local model re-evaluates only the tokens after the longest common prefix with its last call
(:mod:`simrl.wm.llamacpp_backend`, :mod:`simrl.wm.transformers_backend`). Nothing that changes between
the calls of an episode sits before its history.

The model reasons in ``<think>...</think>`` and answers in
``<predicted_observation>...</predicted_observation>``; :func:`parse_prediction` takes the last block.

A user prompt template (``simrl ... --wm-prompt FILE``) is a text file that replaces the domain
prompt, the tools block and the facts block: its ``{tools}`` placeholder becomes the tool definitions
(JSON) and ``{facts}`` the world's facts (empty when there are none). A placeholder the file does not
contain is appended at the end, so the model always sees the tools and facts. No other brace is
special (``str.format`` is not used), so the file may contain JSON examples.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from simrl.envs.registry import WorldModelAdapter, adapter_for
from simrl.errors import SimrlError
from simrl.memo import by_repr
from simrl.world.schema import SimulationInstruction

GENERIC_PROMPT = """\
# Role
You are an environment world model: you simulate, as faithfully as possible, what a tool-using
environment returns to an autonomous agent after each of its actions.

# Rules
- Follow each tool's description and argument schema; a call the real tool would reject returns
  that tool's error message.
- Stay consistent with everything this episode has already shown.
- Output only what the tool would return: no commentary."""
"""The role prompt of an environment whose adapter names none (our own wording)."""



OUTPUT_RULE = """\
# Output format
First reason briefly inside <think>...</think>. Then give the observation exactly as the environment
would return it, inside <predicted_observation>...</predicted_observation>."""

ACTION_HEADER = "**Action:**"
OBSERVATION_HEADER = "**Environment Observation:**"
CONTROL_HEADER = "**Control Instruction:**"
FACTS_HEADER = "# World facts"
_PRED = re.compile(r"<predicted_observation>(.*?)</predicted_observation>", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_ERROR_START = ("error", "404 not found", "unknown tool")


@by_repr
def tools_block(tools: list[dict[str, Any]]) -> str:
    """The tool definitions as a fenced JSON list (OpenAI function format, stable key order); remembered per
    tool list (the same at every episode of an environment: :mod:`simrl.memo`)."""
    return "```json\n" + json.dumps(tools, indent=1, ensure_ascii=False) + "\n```"


def facts_block(instruction: SimulationInstruction | None) -> str:
    """The world's facts for a task (fictional worlds), or ``""`` without an instruction.

    Source: the task's simulation instruction (Qwen-AgentWorld's search *simulation instruction*:
    target query + reference answer, plus our supporting facts and page URLs).
    """
    if instruction is None:
        return ""
    lines = ["This world is fictional. Every observation must agree with these facts; render them "
             "whenever a call touches them, and invent nothing that contradicts them.",
             f"Target query: {instruction.target_query}",
             f"Reference answer: {instruction.reference_answer}", "Facts:"]
    lines += [f"- {f}" for f in instruction.facts] or ["- (none)"]
    if instruction.pages:
        lines += ["Pages that hold these facts:", *(f"- {p}" for p in instruction.pages)]
    return "\n".join(lines)


def load_template(path: str | Path) -> str:
    """Read a user prompt template file (UTF-8 text with ``{tools}`` / ``{facts}`` placeholders).

    Raises:
        SimrlError: the file cannot be read or is empty.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise SimrlError(f"cannot read the world-model prompt template {path}: {err}") from None
    except UnicodeDecodeError:
        raise SimrlError(f"{path}: the world-model prompt template is not UTF-8 text; save it as UTF-8") from None
    if not text.strip():
        raise SimrlError(f"the world-model prompt template {path} is empty")
    return text


def system_prompt(domain: str | WorldModelAdapter, tools: list[dict[str, Any]],
                  instruction: SimulationInstruction | None = None, template: str | None = None) -> str:
    """The system message: the domain's prompt (or ``template``), tools, output rule, world facts.

    Args:
        domain: an environment's world-model adapter, or a domain or environment id naming one
            (:func:`simrl.envs.registry.adapter_for`); the adapter carries the role prompt (``prompt``; none:
            :data:`GENERIC_PROMPT`) or a whole template (``prompt_template``, as ``bfcl``'s); unknown names get
            the generic prompt.
        tools: tool schemas in OpenAI function format.
        instruction: the task's simulation instruction (fictional worlds), or None.
        template: text of a user template (see the module docstring); replaces the domain prompt.
    """
    env_adapter = adapter_for(domain) if isinstance(domain, str) else domain
    template = template if template is not None else env_adapter.prompt_template
    tools_text, facts = tools_block(tools), facts_block(instruction)
    if template is not None:
        text = template
        for key, value in (("{tools}", tools_text), ("{facts}", facts)):
            text = text.replace(key, value) if key in text else (text.rstrip() + "\n\n" + value if value else text)
        return text.rstrip() + "\n\n" + OUTPUT_RULE
    parts = [env_adapter.prompt or GENERIC_PROMPT, "# Tools\nThe agent can call these tools:\n" + tools_text,
             OUTPUT_RULE]
    if facts:
        parts.append(f"{FACTS_HEADER}\n{facts}")
    return "\n\n".join(parts)


def action_message(turn: int, name: str, arguments: dict[str, Any]) -> str:
    """A user message for one action: ``### Turn N``, ``**Action:**``, a fenced json tool call."""
    call = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"### Turn {turn}\n\n{ACTION_HEADER}\n```json\n{call}\n```"


def observation_message(observation: str) -> str:
    """An assistant message for one earlier observation: ``**Environment Observation:**`` + text."""
    return f"{OBSERVATION_HEADER}\n{observation}"


def build_messages(system: str, history: list[tuple[str, dict[str, Any], str]], name: str,
                   arguments: dict[str, Any], control: str | None = None) -> list[dict[str, str]]:
    """The world model's chat for the current action (OpenAI chat format).

    Args:
        system: the system prompt (:func:`system_prompt`).
        history: this episode's earlier ``(tool name, arguments, observation text)``, in order.
        name, arguments: the current tool call.
        control: an optional control instruction, appended to the last user message as its own
            ``**Control Instruction:**`` block (world model only; never shown to the policy).

    Returns:
        ``[system, user, assistant, ..., user]``: ``2 * len(history) + 2`` messages.
    """
    messages = [{"role": "system", "content": system}]
    for turn, (prev, args, observation) in enumerate(history, 1):
        messages.append({"role": "user", "content": action_message(turn, prev, args)})
        messages.append({"role": "assistant", "content": observation_message(observation)})
    last = action_message(len(history) + 1, name, arguments)
    if control:
        last += f"\n\n{CONTROL_HEADER}\n{control.strip()}"
    messages.append({"role": "user", "content": last})
    return messages


def strip_think(text: str) -> str:
    """``text`` without ``<think>...</think>`` blocks (and anything before a lone ``</think>``)."""
    text = _THINK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    return text.strip()


def parse_prediction(text: str) -> str | None:
    """The content of the last complete ``<predicted_observation>`` block, stripped; None if none.

    >>> parse_prediction("<think>a</think><predicted_observation>x</predicted_observation>"
    ...                  "<predicted_observation> y </predicted_observation>")
    'y'
    """
    blocks = _PRED.findall(text or "")
    return blocks[-1].strip() if blocks else None


def looks_like_error(text: str) -> bool:
    """Heuristic ``is_error`` of a predicted observation: it starts with ``Error``, ``404 Not Found``
    or ``unknown tool`` (any case), or with an HTTP error status (``4xx``/``5xx`` then a space or colon),
    or it is a Python traceback (``Traceback (most recent call last):``, what executable tools print).

    >>> looks_like_error("503 Service Unavailable"), looks_like_error('{"records": []}')
    (True, False)
    >>> looks_like_error("Traceback (most recent call last): ... KeyError: 'x'")
    True
    """
    head = text.lstrip()[:80].lower()
    if head.startswith(_ERROR_START) or head.startswith("traceback (most recent call last)"):
        return True
    return len(head) > 4 and head[:3].isdigit() and head[0] in "45" and head[3] in " :"
