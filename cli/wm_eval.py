"""``simrl wm eval``: score world models' predicted observations against real ones (AgentWorldBench dimensions)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from simrl.cli.env import (
    WM_HELP,
    WmApiKeyOpt,
    WmBaseUrlOpt,
    WmModelOpt,
    WmTemperatureOpt,
    deprecated_wm_model,
)
from simrl.cli.options import CONCURRENCY

from simrl.choices import WmTools, WmUnparsed
from simrl.config import ENDPOINT_RETRIES

_BACKEND_HELP = ("World model to evaluate, [LABEL=]NAME[:MODEL] (NAME[:MODEL] as everywhere; --backend is the old name "
                 "of this option); repeat for several, side by side: `oracle` (the world's ground truth, replayed; "
                 "search and mcp-world with --world), `llamacpp` (default model: the packaged SmolLM2 GGUF), "
                 "`transformers[:PATH]`, `openai:MODEL` (with --wm-base-url). LABEL names a column, so one backend can "
                 "run two models: --world-model base=transformers:smollm2 --world-model "
                 "tuned=transformers:runs/wm-model/model. The baselines repeat-previous and empty are always added "
                 "(see --no-baselines).")


def parse_backends(specs: list[str], wm_model: str | None) -> tuple[dict[str, str | None], dict[str, str]]:
    """``--backend [LABEL=]NAME[:MODEL]`` values -> ``({label: model or None}, {label: NAME})``.

    The label defaults to NAME; ``--wm-model`` fills a missing model.

    Raises:
        SimrlError: an unknown name, a repeated label, a model or a label for ``oracle``, or ``--wm-model``
            with two LLM backends.
    """
    from simrl.errors import SimrlError
    from simrl.fidelity.evaluate import BACKENDS, BASELINES

    out: dict[str, str | None] = {}
    kinds: dict[str, str] = {}
    for spec in specs:
        label, eq, rest = spec.partition("=")
        if not eq or ":" in label:
            label, rest = "", spec
        name, _, model = rest.partition(":")
        label = label.strip() or name
        if label in BASELINES or name in BASELINES:
            raise SimrlError(f"{label} is a baseline, always included (drop --backend {spec}; --no-baselines drops it)")
        if name not in BACKENDS:
            raise SimrlError(f"unknown --backend {name!r}; choose from {', '.join(BACKENDS)}")
        if label in out:
            raise SimrlError(f"--backend {label} is given twice; label each model: --backend LABEL={name}:MODEL")
        if name == "oracle" and (model or label != "oracle"):
            raise SimrlError("the oracle has no model (and no label): use --backend oracle")
        out[label], kinds[label] = model or None, name
    llms = [n for n in out if kinds[n] != "oracle"]
    if wm_model and len(llms) > 1 and any(out[n] is None for n in llms):
        raise SimrlError("--wm-model is ambiguous with several LLM backends: name each model as --backend NAME:MODEL")
    return {n: (m if m or kinds[n] == "oracle" else wm_model) for n, m in out.items()}, kinds


def eval_(
    trajectories: Annotated[list[Path], typer.Option(
        "--trajectories", help="Real trajectories JSONL from `simrl rollout` (search, mcp-world, bfcl, mcp) or "
                               "AgentWorldBench-format JSONL (a file or a folder); repeat for several.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: scores.json, scores.md and "
                                                          "predictions.jsonl.")],
    backend: Annotated[list[str], typer.Option(
        "--world-model", "--backend", help=_BACKEND_HELP, metavar="NAME[:MODEL]")] = [],  # noqa: B006 - typer default
    baselines: Annotated[bool, typer.Option(help="Add the repeat-previous and empty baselines.")] = True,
    world: Annotated[Path | None, typer.Option(
        help="World folder the trajectories were recorded in: the oracle's ground truth, the facts shown to the "
             "world model, and the facts factuality is checked against.")] = None,
    max_transitions: Annotated[int | None, typer.Option(
        help="Evaluate at most N transitions (taken round-robin over the domains, in file order).", min=1)] = None,
    concurrency: Annotated[int, typer.Option(help="Predictions in flight at once per backend.", min=1)] = CONCURRENCY,
    wm_model: WmModelOpt = None,
    wm_base_url: WmBaseUrlOpt = None,
    wm_api_key: WmApiKeyOpt = None,
    wm_cache: Annotated[Path | None, typer.Option(help=WM_HELP["wm_cache"] + " A re-run answers from it.")] = None,
    wm_temperature: WmTemperatureOpt = 0.0,
    wm_max_tokens: Annotated[int, typer.Option(help="World model: most tokens per prediction (thinking included).",
                                               min=1)] = 1024,
    wm_n_ctx: Annotated[int | None, typer.Option(help="World model (llamacpp): context size in tokens (default "
                                                      "4096); older turns are dropped to fit.", min=256)] = None,
    wm_tools: Annotated[WmTools, typer.Option(
        help="World model: tool definitions in its system prompt: `all` (the episode's, as recorded) or `called` "
             "(only the tools called so far, this call included; for small-context models: BFCL's tool list "
             "alone is ~8k tokens).")] = "all",
    wm_unparsed: Annotated[WmUnparsed, typer.Option(
        help="World model: score an answer without a <predicted_observation> block as `empty` (default) or as "
             "its `raw` text without <think> (what the world-model environment shows the policy then).")] = "empty",
    judge_base_url: Annotated[str | None, typer.Option(
        help="LLM judge: an OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1); scores each prediction "
             "1-5 per dimension, normalised (x-1)/4*100, reported under `judge`.")] = None,
    judge_model: Annotated[str | None, typer.Option(help="LLM judge: the model id.")] = None,
    judge_api_key: Annotated[str | None, typer.Option(help="LLM judge: API key (default $OPENAI_API_KEY, else "
                                                           "EMPTY).")] = None,
    judge_retries: Annotated[int, typer.Option(help="LLM judge: retries of a failed or unparseable answer "
                                                    "(default: simrl.config.ENDPOINT_RETRIES, as policy and world "
                                                    "model).", min=0)] = ENDPOINT_RETRIES,
    perturb: Annotated[int, typer.Option(
        help="Also measure control compliance: N transitions get a fitting perturbation's control instruction "
             "(as `simrl wm data --perturb` makes them) and each backend's prediction is checked with the "
             "perturbation's own check, without the inject fallback; written to control.jsonl and scores.json "
             "(_compliance).", min=0)] = 0,
    schedule: Annotated[str | None, typer.Option(
        help="With --perturb: the schedule (YAML path or shipped name) whose types and targets are used; "
             "default: every recoverable type.")] = None,
    seed: Annotated[int, typer.Option(help="With --perturb: seed of the draws.")] = 0,
) -> None:
    """Score world models against real environments on AgentWorldBench's five dimensions (0-100).

    For every real tool call in the trajectories, each backend predicts the observation from the real history and the action; the prediction is scored against the real observation on format, factuality, consistency, realism and quality (rule-based, per domain: search, mcp, bfcl, generic) and, with --judge-base-url and --judge-model, by an LLM judge.

    Writes OUT/scores.json (backend -> dimension, with by_domain), OUT/scores.md and OUT/predictions.jsonl (written as predictions finish), and prints a domain x dimension table with the backends side by side.

    Example: simrl wm eval --trajectories runs/search.jsonl --world WORLD --world-model oracle --world-model llamacpp --out runs/fidelity
    """
    from rich.console import Console

    chosen, kinds = _checked_backends(list(backend), wm_model, wm_base_url, schedule, perturb, judge_base_url,
                                      judge_model)
    config = _config(chosen, kinds, wm_base_url, wm_api_key, wm_n_ctx, baselines=baselines, world=world,
                     temperature=wm_temperature, max_tokens=wm_max_tokens, cache=wm_cache, concurrency=concurrency,
                     tools=wm_tools, unparsed=wm_unparsed)
    console = Console(stderr=True)
    picked, loaded = _transitions(trajectories, world, max_transitions, console)
    timings: dict[str, float] = {}
    scores = _predict_and_score(picked, config, out, console, timings, judge_base_url, judge_model, judge_api_key,
                                judge_retries)
    if perturb:
        scores["_compliance"] = _compliance(picked, config, out, perturb, schedule, seed, timings)
    meta = {"trajectories": [str(p) for p in trajectories], "world": str(world) if world else None,
            "transitions": len(picked), "loaded": len(loaded), "models": chosen, "kinds": kinds, "seconds": timings,
            "judge": judge_model, "sampling": config.sampling.model_dump()}
    _write(scores, out, meta, console, perturb=bool(perturb))
    console.print(f"{len(picked)} transitions x {len(config.names)} predictors -> {out}/scores.json")


def _checked_backends(backend: list[str], wm_model: str | None, wm_base_url: str | None, schedule: str | None,
                      perturb: int, judge_base_url: str | None, judge_model: str | None) -> tuple[dict, dict]:
    """:func:`parse_backends`, and the options that go together checked (one line each)."""
    from simrl.errors import SimrlError

    chosen, kinds = parse_backends(backend, wm_model)
    if wm_model:
        deprecated_wm_model(next((kinds[n] for n in chosen if kinds[n] != "oracle"), "openai"), wm_model)
    if "openai" in kinds.values() and not wm_base_url:
        raise SimrlError("--backend openai needs --wm-base-url http://HOST:PORT/v1 (and a model: openai:MODEL)")
    if schedule and not perturb:
        raise SimrlError("--schedule picks the perturbations of the compliance check: give --perturb N as well")
    if bool(judge_base_url) != bool(judge_model):
        raise SimrlError("the LLM judge needs both --judge-base-url and --judge-model")
    return chosen, kinds


def _config(chosen: dict, kinds: dict, wm_base_url: str | None, wm_api_key: str | None, wm_n_ctx: int | None, *,
            temperature: float, max_tokens: int, **fields) -> object:
    """The evaluation's :class:`~simrl.fidelity.evaluate.EvalConfig` (a bad field: one line naming the option)."""
    from simrl.errors import SimrlError
    from simrl.fidelity.evaluate import EvalConfig
    from simrl.wm.backend import Sampling

    options = {n: _backend_options(kinds[n], m, wm_base_url, wm_api_key, wm_n_ctx) for n, m in chosen.items()
               if kinds[n] != "oracle"}
    try:
        config = EvalConfig(backends=list(chosen), kinds=kinds, backend_options=options,
                            sampling=Sampling(temperature=temperature, max_tokens=max_tokens), **fields)
    except ValueError as err:
        raise SimrlError(_first_error(err)) from None
    if not config.names:
        raise SimrlError("nothing to evaluate: give --backend NAME, or keep the baselines")
    return config


def _transitions(trajectories: list[Path], world: Path | None, max_transitions: int | None, console) -> tuple:
    """``(picked, loaded)``: the transitions of the files, and those evaluated (round-robin over the domains);
    prints what was skipped."""
    from collections import Counter

    from simrl.errors import SimrlError
    from simrl.fidelity.predict import select
    from simrl.wm.transitions import load_transitions

    skipped: Counter = Counter()
    loaded = [t for path in trajectories for t in load_transitions(path, world=world, skipped=skipped)]
    if not loaded:
        raise SimrlError(f"no transitions in {', '.join(map(str, trajectories))}: the files hold no real tool calls "
                         "(record some with `simrl rollout --env ... --out FILE`)")
    picked = select(loaded, max_transitions)
    for reason, k in skipped.items():
        console.print(f"skipped {k}: {reason}")
    return picked, loaded


def _predict_and_score(picked: list, config, out: Path, console, timings: dict, judge_base_url: str | None,
                       judge_model: str | None, judge_api_key: str | None, judge_retries: int) -> dict:
    """Every predictor's predictions, scored (and judged, with a judge), with a progress bar; the scores by
    predictor (:func:`simrl.fidelity.report.summarise`)."""
    import asyncio

    from simrl.fidelity.evaluate import run_eval
    from simrl.fidelity.report import summarise
    from simrl.progress import progress_bar

    judge = None
    if judge_base_url:
        from simrl.fidelity.judge import Judge

        judge = Judge(judge_base_url, judge_model or "", judge_api_key, max_retries=judge_retries)
    with progress_bar(console=console) as bar:
        job = bar.add_task("predicting", total=len(picked) * len(config.names))

        async def main() -> list:
            try:
                return await run_eval(picked, config, out, judge=judge, timings=timings,
                                      on_done=lambda row: bar.update(job, advance=1, description=row.backend))
            finally:
                if judge is not None:
                    await judge.close()

        rows = asyncio.run(main())
    return summarise(rows, config.names)


def _write(scores: dict, out: Path, meta: dict, console, *, perturb: bool) -> None:
    """Write scores.json / scores.md and print the tables, each predictor's notes and the compliance summary."""
    from rich.console import Console

    from simrl.fidelity.report import rich_tables, write_scores
    from simrl.tables import print_table

    write_scores(scores, out, meta)
    for table in rich_tables(scores):
        print_table(table)
    for name, entry in scores.items():
        if name.startswith("_"):
            continue
        notes = [f"{k} {entry[k]}" for k in ("unparsed", "failed") if entry[k]] + \
            [f"skipped {v}: {r}" for r, v in entry["skipped"].items()]
        if notes:
            console.print(f"{name}: " + "; ".join(notes))
    if perturb:
        from rich.markdown import Markdown

        from simrl.fidelity.control import markdown

        Console().print(Markdown(markdown(scores["_compliance"])))
        with (out / "scores.md").open("a", encoding="utf-8") as f:
            f.write("\n" + markdown(scores["_compliance"]))


def _compliance(picked: list, config: object, out: Path, n: int, schedule: str | None, seed: int,
                timings: dict) -> dict:
    """The control-compliance summary (:func:`simrl.fidelity.control.run_compliance`); its seconds go to
    ``timings["compliance"]``."""
    import asyncio
    import time

    from simrl.fidelity.control import run_compliance
    from simrl.perturb.schedule import load_schedule

    start = time.perf_counter()
    sched = load_schedule(schedule) if schedule else None
    found = asyncio.run(run_compliance(picked, config, out, n=n, schedule=sched, seed=seed))
    timings["compliance"] = round(time.perf_counter() - start, 2)
    return found


def _first_error(err: ValueError) -> str:
    """The first problem of a pydantic validation error, as ``field: message``."""
    errors = getattr(err, "errors", None)
    if callable(errors) and errors():
        first = errors()[0]
        field = {"tools": "--wm-tools", "unparsed": "--wm-unparsed", "backends": "--backend"}.get(str(first["loc"][0]), str(first["loc"][0]))
        return f"{field}: {first['msg']}"
    return str(err)


def _backend_options(name: str, model: str | None, base_url: str | None, api_key: str | None,
                     n_ctx: int | None) -> dict:
    """``make_backend`` options of one LLM backend from the CLI's flags (None values are dropped there)."""
    if name == "openai":
        return {"model": model, "base_url": base_url, "api_key": api_key}
    return {"model": model, "n_ctx": n_ctx} if name == "llamacpp" else {"model": model}
