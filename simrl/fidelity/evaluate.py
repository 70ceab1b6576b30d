"""The fidelity evaluation: predict every real transition's observation with each backend, and score it.

For each :class:`~simrl.wm.transitions.Transition` (one real tool call with its history) and each
backend:

* an LLM world model (``openai``, ``transformers``, ``llamacpp``; :func:`simrl.wm.factory.shared_backend`)
  generates on ``transition.messages()`` (the real history: teacher forcing) and
  :func:`simrl.wm.prompts.parse_prediction` reads the answer; no ``<predicted_observation>`` block
  means an empty prediction (or, with ``unparsed="raw"``, the raw text without ``<think>``, as
  :class:`~simrl.wm.env.WorldModelEnv` would show it), counted as ``unparsed``. Responses go through the response cache
  (:mod:`simrl.wm.cache`), so a re-run costs nothing; the backend retries transient errors itself (the
  ``openai`` SDK's retries); a call that still fails is recorded as ``failed`` and left out of the means.
* ``oracle``: the world's ground truth. Each episode's real actions are replayed through
  ``WorldModelEnv(env_id, world, "oracle")`` (reset on the task, one step per real call, in order);
  the oracle's state depends on the actions only, so the replay is teacher-forced by construction.
  Only for ``search`` / ``mcp-world`` transitions with ``world`` given; others are ``skipped``.
* baselines: ``repeat-previous`` (the previous real observation of the episode; empty at its first
  call) and ``empty`` (an empty observation), so a score can be read against them.

Each prediction is scored by :func:`simrl.fidelity.scoring.score_prediction` (and by the LLM judge,
:mod:`simrl.fidelity.judge`, when one is given) and appended to ``predictions.jsonl`` at once, so
finished scores survive a crash. :func:`simrl.fidelity.report.summarise` turns the rows into
the ``scores.json`` layout.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simrl.choices import WmTools, WmUnparsed
from simrl.fidelity.oracle import oracle_skip_reason, replay_episode
from simrl.fidelity.predict import baseline_prediction, generate
from simrl.fidelity.scoring import DIMENSIONS, score_prediction, world_facts
from simrl.wm.backend import BackendError, Sampling, WorldModelBackend
from simrl.wm.env_truth import oracle_envs
from simrl.wm.factory import BACKENDS
from simrl.wm.transitions import Transition, called_tools_system

BASELINES = ("repeat-previous", "empty")
"""Trivial predictors every evaluation includes unless told not to."""


class EvalConfig(BaseModel):
    """What to evaluate and how (validated once; the CLI builds it from its options)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    backends: list[str] = Field(default_factory=list, description="World models, by label: oracle, openai, "
                                  "transformers, llamacpp, or a label of `kinds` (each label at most once).")
    kinds: dict[str, str] = Field(default_factory=dict, description="Label -> backend (e.g. base -> transformers, "
                                  "tuned -> transformers): the same backend with two models, side by side. A label "
                                  "not listed is its own backend.")
    baselines: bool = Field(default=True, description="Add the repeat-previous and empty baselines.")
    world: Path | None = Field(default=None, description="World folder: the oracle's ground truth and the "
                                                          "world facts factuality is checked against.")
    backend_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per LLM backend: "
                                                       "options of simrl.wm.factory.make_backend.")
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_tokens=1024), description="World-model sampling.")
    cache: Path | None = Field(default=None, description="Response cache folder (None: no cache).")
    concurrency: int = Field(default=2, ge=1, description="Predictions in flight at once, per backend.")
    unparsed: WmUnparsed = Field(default="empty", description="An answer without a prediction "
                                              "block is scored as an empty observation, or as its raw text without "
                                              "<think> (what WorldModelEnv shows the policy then).")
    tools: WmTools = Field(default="all", description="Tool definitions in the world model's "
                                            "system prompt: all of the episode's, or only those called so far "
                                            "(this call included): for small-context models (BFCL lists ~8k "
                                            "tokens of tools).")

    @model_validator(mode="after")
    def _known(self) -> EvalConfig:
        names = self.backends
        for name in names:
            if name in BASELINES:
                raise ValueError(f"{name!r} is a baseline's name; label the backend otherwise")
            if name != "oracle" and self.kind(name) == "oracle":
                raise ValueError("the oracle has no model to tell apart: name it oracle, unlabelled")
            if self.kind(name) not in BACKENDS:
                raise ValueError(f"unknown backend {self.kind(name)!r}; choose from {', '.join(BACKENDS)} "
                                 f"(baselines {', '.join(BASELINES)} are added by themselves)")
        if len(set(names)) != len(names):
            raise ValueError(f"a backend is named twice: {names}")
        return self

    def kind(self, label: str) -> str:
        """The backend (oracle, openai, transformers, llamacpp) a predictor's label stands for."""
        return self.kinds.get(label, label)

    @property
    def names(self) -> list[str]:
        """Every predictor evaluated, in column order."""
        return [*self.backends, *(BASELINES if self.baselines else ())]


class Prediction(BaseModel):
    """One backend's prediction for one transition, with its scores (one line of ``predictions.jsonl``)."""

    backend: str
    domain: str
    env_id: str | None = None
    task_id: str | None = None
    trajectory: str
    turn_idx: int
    action: str | None = None
    real: str
    prediction: str | None = Field(default=None, description="None: no prediction (failed or skipped).")
    unparsed: bool = False
    raw: str | None = Field(default=None, description="The raw answer, kept when it could not be parsed.")
    error: str | None = Field(default=None, description="Why there is no prediction (failed / skipped).")
    skipped: bool = False
    scores: dict[str, float] | None = None
    judge: dict[str, float] | None = None
    judge_error: str | None = None


class _Writer:
    """Appends predictions to a JSONL file, one flushed line each (thread- and task-safe)."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("w", encoding="utf-8")
        self.lock = threading.Lock()

    def write(self, row: Prediction) -> None:
        with self.lock:
            self.file.write(row.model_dump_json() + "\n")
            self.file.flush()

    def close(self) -> None:
        self.file.close()


def _row(backend: str, tr: Transition, **fields: Any) -> Prediction:
    return Prediction(backend=backend, domain=tr.domain, env_id=tr.env_id, task_id=tr.task_id,
                      trajectory=tr.trajectory, turn_idx=tr.turn_idx, action=tr.action_name,
                      real=tr.observation, **fields)


async def _llm(name: str, tr: Transition, backend: WorldModelBackend, config: EvalConfig, cache: Any) -> Prediction:
    from simrl.wm.prompts import parse_prediction, strip_think

    messages = tr.messages()
    if config.tools == "called":
        messages[0] = {"role": "system", "content": called_tools_system(tr, config.world)}
    try:
        raw = await generate(backend, messages, config.sampling, cache)
    except BackendError as err:
        return _row(name, tr, error=f"{name} failed: {err}")
    predicted = parse_prediction(raw)
    if predicted is None:
        shown = strip_think(raw) if config.unparsed == "raw" else ""
        return _row(name, tr, prediction=shown, unparsed=True, raw=raw[:2000])
    return _row(name, tr, prediction=predicted)


async def run_eval(transitions: Sequence[Transition], config: EvalConfig, out_dir: Path, *,
                   judge: Any = None, on_done: Callable[[Prediction], None] | None = None,
                   timings: dict[str, float] | None = None) -> list[Prediction]:
    """Predict, score and record every (backend, transition) pair; returns the rows in order of completion.

    Args:
        transitions: the real transitions to evaluate.
        config: backends, world, sampling, cache, concurrency.
        out_dir: ``predictions.jsonl`` is (re)written here as predictions finish.
        judge: a :class:`~simrl.fidelity.judge.Judge`, or None (rule-based scores only).
        on_done: called with each finished row (progress bars).
        timings: if given, filled with each backend's wall time, seconds (backends run one after another).

    Raises:
        SimrlError: a backend cannot be made (bad options, a missing package).
    """
    from simrl.wm.factory import shared_backend, shared_cache

    llms = {n: shared_backend(config.kind(n), **config.backend_options.get(n, {}))
            for n in config.backends if config.kind(n) != "oracle"}
    cache = shared_cache(config.cache)
    world_of = _world_facts(transitions, config.world)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer, rows = _Writer(out_dir / "predictions.jsonl"), []
    gate = asyncio.Semaphore(config.concurrency)

    async def finish(row: Prediction, tr: Transition) -> None:
        if row.prediction is not None and not row.skipped:
            try:
                scored = score_prediction(row.prediction, tr.observation, domain=tr.domain,
                                          history=[h.observation for h in tr.history],
                                          world=world_of.get(tr.trajectory))
            except Exception as err:  # noqa: BLE001 - one odd prediction must not end the run (and lose rows)
                row.error = f"scoring failed: {type(err).__name__}: {err}"
            else:
                row.scores = {d: round(getattr(scored, d), 2) for d in DIMENSIONS} | {"overall": round(scored.overall, 2)}
            if judge is not None and row.scores is not None:
                await _judge(judge, row, tr)
        writer.write(row)
        rows.append(row)
        if on_done is not None:
            on_done(row)

    async def one(name: str, tr: Transition) -> None:
        async with gate:
            row = await _llm(name, tr, llms[name], config, cache)
        await finish(row, tr)

    async def episode(trs: list[Transition], task: Any) -> None:
        async with gate:
            found = await replay_episode(trs, config.world, task)  # type: ignore[arg-type]
        by_turn = {t.turn_idx: t for t in trs}
        for turn_idx, text, problem in found:
            tr = by_turn[turn_idx]
            await finish(_row("oracle", tr, prediction=text, error=problem, skipped=problem is not None), tr)

    try:
        for name in config.names:
            start, jobs = time.perf_counter(), []
            if name in BASELINES:
                jobs = [finish(_row(name, tr, prediction=baseline_prediction(name, tr)), tr) for tr in transitions]
            elif config.kind(name) == "oracle":
                jobs = _oracle_jobs(transitions, config.world, episode, finish)
            else:
                jobs = [one(name, tr) for tr in transitions]
            await asyncio.gather(*jobs)
            if timings is not None:
                timings[name] = round(time.perf_counter() - start, 2)
    finally:
        writer.close()
    return rows


def _oracle_jobs(transitions: Sequence[Transition], world: Path | None, episode: Callable, finish: Callable) -> list:
    """One replay job per episode the oracle covers, and a ``skipped`` row for each transition it does not."""
    tasks = {}
    if world is not None:
        from simrl.envs.base import find_spec
        from simrl.world.io import load_tasks

        tasks = {t.task_id: t for t in load_tasks(world)}
        for env_id in sorted({tr.env_id for tr in transitions if tr.env_id}):  # environments with their own tasks
            found = find_spec(env_id)
            if found is not None and found.world_model is not None and found.load_tasks is not None:
                tasks |= {t.task_id: t for t in found.tasks(world)}
    jobs: list = []
    groups: dict[str, list[Transition]] = defaultdict(list)
    covered, task_ids = set(oracle_envs()), set(tasks)  # once, not per transition
    for tr in transitions:
        reason = oracle_skip_reason(tr, world, task_ids, covered)
        if reason is None:
            groups[tr.trajectory].append(tr)
        else:
            jobs.append(finish(_row("oracle", tr, error=f"oracle skipped: {reason}", skipped=True), tr))
    return jobs + [episode(trs, tasks[trs[0].task_id]) for trs in groups.values()]


def _world_facts(transitions: Sequence[Transition], world: Path | None) -> dict[str, set[str]]:
    """Trajectory key -> the world's facts for its task (search / mcp-world transitions with a world)."""
    if world is None:
        return {}
    from simrl.wm.oracle import instructions_of

    instructions, covered = instructions_of(world), set(oracle_envs())
    return {tr.trajectory: world_facts(instructions.get(tr.task_id or ""))
            for tr in transitions if tr.env_id in covered}


async def _judge(judge: Any, row: Prediction, tr: Transition) -> None:
    from simrl.fidelity.judge import JudgeError, judge_messages

    messages = judge_messages(domain=tr.domain, history=[(h.action_text, h.observation) for h in tr.history],
                              action=tr.action_text, real=tr.observation, predicted=row.prediction or "")
    try:
        verdict = await judge.score(messages)
    except JudgeError as err:
        row.judge_error = str(err)
        return
    except Exception as err:  # noqa: BLE001 - a judge failure loses the judgement, never the row
        row.judge_error = f"judge failed: {type(err).__name__}: {err}"
        return
    row.judge = {d: round(v, 2) for d, v in verdict.scores.items()} | {"overall": round(verdict.overall, 2)}
