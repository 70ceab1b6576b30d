"""``simrl eval``: evaluate a policy on held-out REAL tasks (success, pass@k, F1, success by edge case)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from simrl.cli.options import (
    CONCURRENCY,
    MAX_TURNS,
    POLICY_HELP,
    SPLIT,
    ConcurrencyOpt,
    TransportOpt,
    rollout_env,
)

from simrl.choices import Split


def eval_(
    checkpoint: Annotated[Path | None, typer.Option(help="A trained policy: a scorer file of the embedded trainer "
                                                         "(final.pt, warmstart.pt, checkpoints/step-N.pt) or an LLM "
                                                         "policy's Hugging Face model folder (a trl run's final/ or "
                                                         "checkpoints/checkpoint-N, a LoRA adapter folder, a merged "
                                                         "verl checkpoint); acts greedily.")] = None,
    policy: Annotated[str | None, typer.Option("--policy", "-p", help="Instead of --checkpoint: " + POLICY_HELP)] = None,
    recipe: Annotated[Path | None, typer.Option(help="A recipe (path or shipped name): take the environment, world, real "
                                                     "options, split, trials, task limit and turn limit from it (flags "
                                                     "override). A checkpoint inside a run folder uses the run's own "
                                                     "RUN/recipe.yaml instead.")] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", parser=rollout_env, metavar="ENV",
                                            help="Environment id (see `simrl env list`; your own: `simrl --import MODULE`).")] = None,
    world: Annotated[Path | None, typer.Option(help="World folder (with --recipe: default the recipe's training "
                                                    "world under runs/<recipe>/worlds).")] = None,
    split: Annotated[Split | None, typer.Option(help=f"Task split (default {SPLIT}, or the recipe's).")] = None,
    trials: Annotated[int | None, typer.Option(help="Episodes per task: k of pass@k / avg@k (default 1).",
                                               min=1)] = None,
    n: Annotated[int | None, typer.Option("-n", help="At most this many tasks (default: all of the split).",
                                          min=1)] = None,
    max_turns: Annotated[int | None, typer.Option(help=f"Turn limit per episode (default {MAX_TURNS}, or the "
                                                       "recipe's budget.max_turns).", min=1)] = None,
    transport: TransportOpt = None,
    fault_rate: Annotated[float | None, typer.Option(help="The real environment's own fault rate per call "
                                                          "(timeouts, 429, 503; mcp-world: the record server's, "
                                                          "search: the engine's).", min=0, max=1)] = None,
    seed: Annotated[int | None, typer.Option(help="Base episode seed (default 0; a run's checkpoint: the seeds of "
                                                  "the run's own evaluation).")] = None,
    concurrency: ConcurrencyOpt = CONCURRENCY,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for eval.json and "
                                                                 "eval_trajectories.jsonl.")] = None,
    samples: Annotated[int, typer.Option(help="Print this many sample episodes after the scores (the first trial of "
                                              "the first tasks, as vf-eval does); with --out also saved as chat rows "
                                              "(simrl export's format) in OUT/samples.jsonl. 0: none.",
                                         min=0, max=100)] = 2,
    check_expressible: Annotated[bool, typer.Option(
        "--check-expressible", help="Instead of evaluating a policy: check that some sequence of candidate actions "
                                    "solves each evaluation task in the real environment (the scripted expert "
                                    "guides the search); with --recipe, every evaluation set of the recipe. Exit 1 "
                                    "when a task is not expressible.")] = False,
) -> None:
    """Run a policy on held-out tasks of the real environment and print its scores and success by edge case.

    A checkpoint of a training run (RUN/final.pt, RUN/warmstart.pt, RUN/checkpoints/step-N.pt, a trl or verl run's RUN/final) is evaluated as the run evaluated itself: the run's own recipe, its worlds folder, the training world's evaluation split and the held-out worlds, the same episode seeds; RUN/final.pt reproduces RUN/eval exactly. Any of --env, --world, --split, --trials, -n, --max-turns, --transport, --fault-rate or --seed makes it a custom evaluation on the run's recipe and worlds instead.

    Example: simrl eval --checkpoint runs/qs/sim-controlled/seed-0/final.pt
    """
    from simrl.envs.base import make
    from simrl.errors import SimrlError
    from simrl.evaluation.evaluate import evaluate_policy

    if check_expressible:
        if checkpoint is not None or policy is not None:
            raise SimrlError("--check-expressible checks the candidate actions, not a policy: drop --checkpoint/--policy")
        return _check(recipe, env, world, split, trials, n, max_turns, transport, fault_rate, seed)
    if (checkpoint is None) == (policy is None):
        raise SimrlError("give exactly one of --checkpoint PATH or --policy expert|openai:URL")
    run = _run_of(checkpoint) if checkpoint is not None else None
    worlds = None
    if run is not None:
        custom = [env, world, split, trials, n, max_turns, transport, fault_rate, seed]
        if all(v is None for v in custom):
            return _eval_run(run, checkpoint, recipe, out, samples)
        recipe, worlds = _run_recipe(run), run.parent.parent / "worlds"
    setup = _setup(recipe, env, world, split, trials, n, max_turns, transport, fault_rate, worlds)
    seed = seed or 0
    pol = _run_policy(run, checkpoint) if run is not None else _policy(checkpoint, policy, setup)
    make(setup["env"], **setup["options"])  # fail fast on bad environment options, before any episode
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)  # an output path that cannot be a folder fails before any episode
    import tempfile

    from simrl.export import samples as first_episodes
    from simrl.progress import progress_bar

    with progress_bar() as bar, tempfile.TemporaryDirectory(prefix="simrl-eval-") as tmp:
        job = bar.add_task(f"eval {setup['env']}", total=len(setup["tasks"]) * setup["trials"])
        result = evaluate_policy(pol, lambda: make(setup["env"], **setup["options"]), setup["tasks"],
                                 trials=setup["trials"], max_turns=setup["max_turns"], seed=seed, out=out or Path(tmp),
                                 concurrency=concurrency, label=str(checkpoint or policy),
                                 on_done=lambda _: bar.advance(job))
        picked = first_episodes(out or Path(tmp), samples)
    _print(result, out)
    _print_samples(picked, out)


def _check(recipe, env, world, split, trials, n, max_turns, transport, fault_rate, seed) -> None:
    """``--check-expressible``: every evaluation set of the recipe (or the tasks the flags pick), each task's
    verdict and the counts per subset (:mod:`simrl.evaluation.expressible`)."""
    from rich.console import Console

    from simrl.envs.base import make
    from simrl.evaluation.eval_set import prepare
    from simrl.evaluation.evaluate import EVAL_SEED
    from simrl.evaluation.expressible import summary
    from simrl.evaluation.results import TaskResult
    from simrl.experiment.heldout import evaluation_sets

    sets = []
    custom = [world, split, trials, n, max_turns, transport, fault_rate, seed]
    if recipe is not None and all(v is None for v in custom):
        from simrl.experiment import runs
        from simrl.experiment.recipe import load_recipe

        rec = load_recipe(recipe)
        worlds = Path("runs") / rec.name / "worlds"
        sets = [(label, ready) for label, _, ready in evaluation_sets(rec, runs.training_world(rec, worlds), worlds)]
    else:
        setup = _setup(recipe, env, world, split, trials, n, max_turns, transport, fault_rate)
        make(setup["env"], **setup["options"])  # fail fast on bad environment options
        ready = prepare(setup["tasks"], lambda: make(setup["env"], **setup["options"]), env_id=setup["env"],
                        world=setup["world"], trials=setup["trials"], max_turns=setup["max_turns"],
                        seed=EVAL_SEED if seed is None else seed)
        sets = [(split or "tasks", ready)]
    console, missing = Console(), 0
    for label, ready in sets:
        per_task = [TaskResult(task_id=t.task_id, type=t.type, success=[], reward=[],
                               properties=ready.properties[t.task_id]) for t in ready.tasks]
        result = summary(per_task)
        counts = ", ".join(f"{k} {d['expressible']}/{d['tasks']} ({d['expert_path']} turn for turn)"
                           for k, d in result["subsets"].items())
        console.print(f"{label}: expressible {counts}; {len(ready.dropped)} dropped (the expert cannot solve them)",
                      markup=False, highlight=False)
        for d in result["not"]:
            console.print(f"  NOT expressible {d['task_id']}: {d['why']}", markup=False, highlight=False)
        missing += len(result["not"])
    if missing:
        raise typer.Exit(1)


def _run_of(checkpoint: Path) -> Path | None:
    """The run folder (``OUT/<arm>/seed-<S>`` with its recipe) a checkpoint lies in, or None."""
    import re

    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if re.fullmatch(r"seed-\d+", folder.name) and _run_recipe(folder).is_file():
            return folder
    return None


def _run_recipe(run: Path) -> Path:
    """A run's resolved recipe: ``RUN/recipe.yaml`` (embedded, trl) or ``RUN/verl/recipe.yaml`` (verl)."""
    return run / "recipe.yaml" if (run / "recipe.yaml").is_file() else run / "verl" / "recipe.yaml"


def _eval_run(run: Path, checkpoint: Path, recipe: Path | None, out: Path | None, samples: int) -> None:
    """Evaluate a run's checkpoint as the run evaluated itself (:func:`simrl.experiment.heldout.evaluate_run`) and
    say whether it reproduces the run's own ``eval/``."""
    import tempfile

    from rich.console import Console

    from simrl.evaluation.results import load_run_eval
    from simrl.experiment.heldout import evaluate_run
    from simrl.experiment.recipe import load_recipe
    from simrl.export import samples as first_episodes

    console = Console(stderr=True)
    rec = load_recipe(_run_recipe(run))
    if recipe is not None:
        given = load_recipe(recipe).model_dump(mode="json", exclude={"logging"})
        if given != rec.model_dump(mode="json", exclude={"logging"}):
            console.print(f"note: {recipe} differs from the run's own recipe; using {_run_recipe(run)}",
                          markup=False, highlight=False)
    worlds = run.parent.parent / "worlds"
    console.print(f"evaluating {checkpoint} with the run's recipe {rec.name!r}, worlds in {worlds}", markup=False,
                  highlight=False)
    with tempfile.TemporaryDirectory(prefix="simrl-eval-") as tmp:
        result = evaluate_run(run, rec, worlds=worlds, checkpoint=str(checkpoint.relative_to(run)),
                              out=out or tmp)
        result = result.model_copy(update={"label": str(checkpoint)})
        picked = first_episodes(Path(out or tmp), samples)
    _print(result, out)
    _print_samples(picked, out)
    own = load_run_eval(run)
    if own is not None and checkpoint.resolve() in ((run / "final.pt").resolve(), (run / "final").resolve()):
        same = own.metrics == result.metrics
        console.print(f"{'same numbers as' if same else 'differs from'} the run's own evaluation ({run / 'eval'})",
                      markup=False, highlight=False)


def _setup(recipe, env, world, split, trials, n, max_turns, transport, fault_rate, worlds=None) -> dict:
    """Environment id, options, tasks, trials and turn limit from the flags and the recipe (flags first)."""
    from simrl.errors import SimrlError
    from simrl.policies import episode_tasks

    options: dict = {}
    if recipe is not None:
        from simrl.experiment import runs
        from simrl.experiment.recipe import load_recipe

        rec = load_recipe(recipe)
        if env is not None and env != rec.env.id:
            raise SimrlError(f"--env {env} differs from the recipe's environment {rec.env.id}")
        env, options = rec.env.id, rec.real.make_options()
        world = world or runs.training_world(rec, worlds or Path("runs") / rec.name / "worlds")
        split, trials = split or rec.evaluation.split, trials or rec.evaluation.trials
        n, max_turns = n or rec.evaluation.max_tasks, max_turns or rec.budget.max_turns
        tasks = runs.world_tasks(rec, world, split)[:n]
    else:
        if env is None:
            raise SimrlError("give --env ID (see `simrl env list`) or --recipe RECIPE")
        tasks = episode_tasks(env, world, split or SPLIT, n)
    given = [k for k, v in (("transport", transport), ("fault_rate", fault_rate)) if v is not None]
    if given:
        from simrl.envs.registry import option_error

        if (why := option_error(env, given)) is not None:
            raise SimrlError(f"--{' and --'.join(k.replace('_', '-') for k in given)}: {why}")
    options |= {k: v for k, v in (("transport", transport), ("fault_rate", fault_rate)) if k in given}
    if world is not None:
        options["world"] = world
    return {"env": env, "world": world, "options": options, "tasks": tasks, "trials": trials or 1,
            "max_turns": max_turns or MAX_TURNS}


def _run_policy(run: Path, checkpoint: Path):
    """A run's checkpoint as the run's trainer kind loads it (its ``load_policy`` hook), acting greedily."""
    from simrl.errors import SimrlError
    from simrl.experiment.heldout import load_policy
    from simrl.experiment.recipe import load_recipe
    from simrl.experiment.runs import run_seed

    seed = run_seed(run)
    if seed is None:
        raise SimrlError(f"--run {run}: not a run folder of `simrl train` (OUT/<arm>/seed-<S>)")
    pol = load_policy(load_recipe(_run_recipe(run)), checkpoint, seed)
    pol.greedy = True
    return pol


def _policy(checkpoint: Path | None, spec: str | None, setup: dict):
    """The policy to evaluate: a checkpoint outside a run folder (a ScorerPolicy file or an HF model folder,
    greedy), or a make_policy spec."""
    from simrl.errors import SimrlError

    if checkpoint is not None:
        if checkpoint.is_dir():
            from simrl.policies.hf_policy import HFPolicy

            try:
                return HFPolicy.from_folder(checkpoint, greedy=True)
            except SimrlError as err:
                raise SimrlError(f"--checkpoint {err}") from None
        if not checkpoint.is_file():
            raise SimrlError(f"--checkpoint {checkpoint}: no such file or folder")
        from simrl.policies.scorer import ScorerPolicy

        pol = ScorerPolicy.load(checkpoint)
        pol.greedy = True
        return pol
    from simrl.policies import make_policy

    return make_policy(spec, setup["env"], setup["world"], setup["tasks"])


def _print(result, out: Path | None) -> None:
    """Print an ``EvalResult``: its metrics table and its success by edge case met."""
    from rich.table import Table

    from simrl.tables import print_table

    table = Table(title=f"{result.label}: {result.tasks} tasks x {result.trials} trial(s)" + (f" -> {out}" if out else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.metrics.items():
        table.add_row(k, f"{v:.1f}" if k in ("mean_turns", "env_failures") else f"{v:.3f}")
    cases = Table(title="success by edge case met")
    for col in ("edge case", "episodes", "success", "mean turns"):
        cases.add_column(col, justify="left" if col == "edge case" else "right")
    for name, s in result.edge_cases.items():
        cases.add_row(name, str(s.episodes), f"{s.success:.1%}", f"{s.mean_turns:.1f}")
    print_table(table)
    print_table(cases)


def _print_samples(picked: list, out: Path | None) -> None:
    """Print sample episodes as short transcripts; with ``out``, save them as chat rows in ``OUT/samples.jsonl``."""
    from rich.console import Console

    from simrl.export import chat_row, transcript, write_rows

    console = Console()
    for i, traj in enumerate(picked, 1):
        console.rule(f"sample {i}/{len(picked)}", characters="-")
        console.print(transcript(traj), markup=False, highlight=False, soft_wrap=True)
    if picked and out is not None:
        write_rows([chat_row(t, source="simrl eval") for t in picked], out / "samples.jsonl", "jsonl")
        console.print(f"samples: {out / 'samples.jsonl'}", markup=False, highlight=False)
