"""BFCL v4 multi-turn data for the ``bfcl`` environment: tasks, tool schemas and call strings.

Everything is read from the installed ``bfcl-eval`` package (imported lazily, so simrl imports without
it):

* ``data/BFCL_v4_<category>.json`` (one JSON entry a line: ``id``, ``question``, ``initial_config``,
  ``involved_classes``, ``path``, ``missed_function``) and ``data/possible_answer/BFCL_v4_<category>.json``
  (``ground_truth``: per user turn, a list of call strings such as ``"cd(folder='document')"``);
* ``data/multi_turn_func_doc/*.json``: the function docs of each tool class, mapped by
  ``constants/executable_backend_config.py`` (``MULTI_TURN_FUNC_DOC_FILE_MAPPING``), converted to the
  OpenAI function format like ``model_handler/utils.py`` ``convert_to_tool`` (types via
  ``constants/type_mappings.py`` ``GORILLA_TO_OPENAPI``);
* ``miss_func`` hold-outs as in ``utils.py`` ``populate_test_cases_with_predefined_functions`` and
  ``model_handler/base_handler.py`` (the hold-out turn's user message is
  ``DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC``).
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
import inspect
import json
import keyword
import math
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.types import ToolCall
from simrl.world.schema import BFCLGold, Evidence, Task

INSTALL_HINT = ("the `bfcl` environment needs bfcl-eval; install it without its heavy dependencies: "
                "`pip install --no-deps bfcl-eval && pip install mpmath` (a plain `pip install bfcl-eval` "
                "pulls CUDA torch)")
CATEGORIES = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
"""The BFCL v4 multi-turn categories :func:`load_bfcl_tasks` reads."""
ADDITIONAL_FUNCTION_PROMPT = "I have updated some more functions you can choose from. What about now?"
"""The user message of a ``miss_func`` hold-out turn (bfcl-eval ``DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC``)."""


def require_bfcl() -> Path:
    """The ``data`` folder of the installed bfcl-eval package.

    Raises:
        SimrlError: bfcl-eval (or a module its multi-turn tools import, e.g. mpmath) is missing; the
            message has the install line.
    """
    try:
        import bfcl_eval
        importlib.import_module("bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker")
        importlib.import_module("bfcl_eval.eval_checker.multi_turn_eval.func_source_code.math_api")
    except ImportError as err:
        raise SimrlError(f"{INSTALL_HINT} ({type(err).__name__}: {err})") from err
    return Path(bfcl_eval.__file__).resolve().parent / "data"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _difficulty(ground_truth: list[list[str]]) -> str:
    calls = sum(len(t) for t in ground_truth)
    return "easy" if calls <= 4 else "medium" if calls <= 8 else "hard"


def entry_to_task(entry: dict[str, Any], ground_truth: list[list[str]], category: str, source: str) -> Task:
    """One BFCL multi-turn entry (and its ground truth) as a simrl :class:`Task` of type ``bfcl``.

    The prompt is the first user turn; every turn's user messages are joined by newlines, and an empty
    ``miss_func`` hold-out turn gets :data:`ADDITIONAL_FUNCTION_PROMPT`. ``hops`` is the number of user
    turns; ``difficulty`` follows the number of ground-truth calls (<= 4 easy, <= 8 medium, else hard).
    """
    turns = ["\n".join(m["content"] for m in turn if m.get("role") == "user") or ADDITIONAL_FUNCTION_PROMPT
             for turn in entry["question"]]
    gold = BFCLGold(entry_id=entry["id"], category=category, ground_truth=ground_truth, turns=turns,
                    involved_classes=list(entry["involved_classes"]),
                    initial_config=entry.get("initial_config", {}),
                    missed_function={str(k): list(v) for k, v in entry.get("missed_function", {}).items()},
                    path=list(entry.get("path", [])), source=source)
    return Task(task_id=entry["id"], type="bfcl", split="test", prompt=turns[0], gold=gold,
                evidence=Evidence(), hops=len(turns), difficulty=_difficulty(ground_truth), template=category)


@functools.lru_cache(maxsize=len(CATEGORIES))
def _load_category(category: str) -> tuple[Task, ...]:
    data = require_bfcl()
    name = f"BFCL_v4_{category}.json"
    entries, answers = _read_jsonl(data / name), _read_jsonl(data / "possible_answer" / name)
    truth = {a["id"]: a["ground_truth"] for a in answers}
    missing = [e["id"] for e in entries if e["id"] not in truth]
    if missing:
        raise SimrlError(f"bfcl-eval's {name} has entries without ground truth: {missing[:5]}")
    return tuple(entry_to_task(e, truth[e["id"]], category, f"{name}#{e['id']}") for e in entries)


def load_bfcl_tasks(category: str = "multi_turn_base", limit: int | None = None) -> list[Task]:
    """BFCL v4 multi-turn entries of ``category`` as ``bfcl`` tasks, in the data file's order (by id).

    Args:
        category: one of :data:`CATEGORIES` (200 entries each in bfcl-eval 2026.3.23).
        limit: at most this many (the first ones).

    Raises:
        SimrlError: bfcl-eval is not installed, or an unknown category.
    """
    if category not in CATEGORIES:
        raise SimrlError(f"unknown BFCL category {category!r}; known: {', '.join(CATEGORIES)}")
    tasks = list(_load_category(category))
    return tasks if limit is None else tasks[:max(0, limit)]


def first_turns(task: Task, n: int) -> Task:
    """``task`` cut to its first ``n`` user turns (and their ground truth); id ``"<id>-first<n>"``.

    A one-turn cut suits the environment checker, which expects one answer to end an episode.
    """
    gold = task.gold
    if not isinstance(gold, BFCLGold) or n < 1:
        raise SimrlError(f"first_turns needs a bfcl task and n >= 1 (got {task.type}, n={n})")
    cut = gold.model_copy(update={"ground_truth": gold.ground_truth[:n], "turns": gold.turns[:n]})
    return task.model_copy(update={"task_id": f"{task.task_id}-first{n}", "gold": cut, "hops": len(cut.turns),
                                   "difficulty": _difficulty(cut.ground_truth)})


# -- tools ------------------------------------------------------------------------------------------------
def _cast(schema: dict[str, Any], *, is_property: bool) -> dict[str, Any]:
    """A BFCL parameter schema with OpenAI types (``_cast_to_openai_type`` of bfcl-eval)."""
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI

    out = dict(schema)
    kind = out.get("type")
    if kind == "float" and is_property:
        out["format"] = "float"
        out["description"] = out.get("description", "") + " This is a float type value."
    out["type"] = GORILLA_TO_OPENAPI.get(kind, "string") if kind else "string"
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _cast(v, is_property=True) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _cast(out["items"], is_property=False)
    return out


def to_openai_tool(doc: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function doc as ``{"type": "function", "function": {"name", "description", "parameters"}}``.

    The ``response`` schema is appended to the description (as bfcl-eval does for models whose API has
    no response field).
    """
    params = _cast(doc.get("parameters") or {"properties": {}}, is_property=False)
    params["type"] = "object"
    params.setdefault("properties", {})
    description = doc.get("description", "")
    if "response" in doc:
        description += f" The response field has the following schema: {json.dumps(doc['response'])}"
    return {"type": "function", "function": {"name": doc["name"], "description": description,
                                             "parameters": params}}


@functools.lru_cache(maxsize=32)
def _class_docs(class_name: str) -> tuple[dict[str, Any], ...]:
    from bfcl_eval.constants.executable_backend_config import MULTI_TURN_FUNC_DOC_FILE_MAPPING

    if class_name not in MULTI_TURN_FUNC_DOC_FILE_MAPPING:
        raise SimrlError(f"unknown BFCL tool class {class_name!r}")
    path = require_bfcl() / "multi_turn_func_doc" / MULTI_TURN_FUNC_DOC_FILE_MAPPING[class_name]
    return tuple(to_openai_tool(doc) for doc in _read_jsonl(path))


def tool_schemas(gold: BFCLGold, turn: int = 0) -> list[dict[str, Any]]:
    """The OpenAI tool schemas a policy sees at user turn ``turn`` (0-based).

    Docs of the involved classes in order, minus ``miss_func`` hold-outs, then the hold-outs of turns
    ``<= turn`` appended in turn order (bfcl-eval ``inference_multi_turn_FC``).
    """
    docs = [d for c in gold.involved_classes for d in _class_docs(c)]
    held = {name: int(t) for t, names in gold.missed_function.items() for name in names}
    by_name = {d["function"]["name"]: d for d in docs}
    tools = [d for d in docs if d["function"]["name"] not in held]
    for name, _ in sorted((kv for kv in held.items() if kv[1] <= turn and kv[0] in by_name), key=lambda kv: kv[1]):
        tools.append(by_name[name])
    return copy.deepcopy(tools)


# -- call strings ------------------------------------------------------------------------------------------
def _check_value(value: Any, where: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: non-finite number {value!r}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_value(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)):
                raise ValueError(f"{where}: dict key {k!r} is not a string or number")
            _check_value(v, f"{where}[{k!r}]")
        return
    raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


def format_call(call: ToolCall, functions: set[str] | frozenset[str]) -> str:
    """``call`` as a BFCL call string (``name(k=repr(v),...)``, as bfcl-eval ``convert_to_function_call``).

    Raises:
        ValueError: the name is not one of ``functions``, an argument name is not a Python identifier,
            or a value is not a (finite) JSON value; the message says which.
    """
    if call.name not in functions:
        raise ValueError(f"unknown function {call.name!r}; available: {', '.join(sorted(functions))}")
    for key, value in call.arguments.items():
        if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
            raise ValueError(f"{call.name}: argument name {key!r} is not a valid parameter name")
        _check_value(value, f"{call.name}: argument {key!r}")
    return f"{call.name}({','.join(f'{k}={v!r}' for k, v in call.arguments.items())})"


def load_class(class_name: str) -> type:
    """The bfcl-eval tool class ``class_name`` (``CLASS_FILE_PATH_MAPPING`` of executable_backend_config)."""
    from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING

    return getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[class_name]), class_name)


def parse_call(text: str, involved_classes: list[str]) -> ToolCall:
    """A BFCL call string such as ``"sort('final_report.pdf')"`` as a :class:`ToolCall`.

    Positional arguments are named from the method's signature in the first involved class that has it.

    Raises:
        ValueError: not a single ``name(literal, key=literal, ...)`` call, or an unknown method.
    """
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a plain function call: {text!r}")
    name = node.func.id
    args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    if node.args:
        method = next((getattr(load_class(c), name) for c in involved_classes if hasattr(load_class(c), name)), None)
        if method is None:
            raise ValueError(f"no involved class has a method {name!r}")
        params = [p for p in inspect.signature(method).parameters if p != "self"]
        args = dict(zip(params, (ast.literal_eval(a) for a in node.args))) | args
    return ToolCall(name=name, arguments=args)
