"""Experiment tracking: a run's metrics fed to TensorBoard, trackio and W&B (the recipe's ``logging`` block).

``metrics.jsonl`` stays the source of truth; trackers get a copy of each line as it is written, and
a tracker that fails while logging is dropped with a warning, never the run. One place decides, for
every trainer, what a run is called and where its files go (:func:`run_tracking`):

* the run: ``<arm>-seed<S>``, with ``{recipe, arm, seed, group, settings}`` (settings: the whole
  recipe) as its config, in project ``logging.project`` (default ``simrl-<recipe name>``) and group
  ``logging.group`` (default: the output folder's name, i.e. the ablation);
* local files under ``logging.dir`` (default ``OUT/tracking``): ``tensorboard/<arm>/seed-<S>/`` (one
  TensorBoard run per arm x seed: ``tensorboard --logdir OUT/tracking/tensorboard``), ``trackio/``
  (trackio's database, unless ``TRACKIO_DIR`` is set: ``TRACKIO_DIR=OUT/tracking/trackio trackio show``)
  and ``wandb/`` (W&B's run files, unless ``WANDB_DIR`` is set; ``WANDB_MODE=offline`` keeps them local).

The embedded trainer logs through :class:`Tracker` (one backend per tool, each imported when used); an
ablation adds its held-out results, baselines, comparisons and plots (:mod:`simrl.experiment.tracking_report`).
TRL gets ``report_to`` and the run name (:func:`simrl.trainers.trl.grpo_config`), verl
``trainer.logger`` (:func:`simrl.trainers.verl.config.recipe_overrides`); both read the group and the
folders from :meth:`RunTracking.env` (W&B's ``WANDB_RUN_GROUP``, ``TENSORBOARD_LOGGING_DIR`` of
transformers, ``TENSORBOARD_DIR`` of verl, ``TRACKIO_DIR``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simrl.errors import SimrlError
from simrl.experiment.recipe import Recipe
from simrl.experiment.recipe_training import TRACKERS

_PACKAGES = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}
_INSTALL = "pip install 'simrl[tracking]'"


def parse_report_to(values: Sequence[str]) -> list[str]:
    """``--report-to`` values (repeated and/or comma-separated; ``none``: no tracker) as tracker names.

    >>> parse_report_to(["tensorboard,wandb", "trackio"]), parse_report_to(["none"])
    (['tensorboard', 'wandb', 'trackio'], [])

    Raises:
        SimrlError: an unknown name (the message lists the choices).
    """
    names = [n.strip().lower() for v in values for n in v.split(",") if n.strip()]
    bad = [n for n in names if n not in (*TRACKERS, "none")]
    if bad:
        raise SimrlError(f"--report-to {','.join(bad)}: choose from {', '.join(TRACKERS)} (several: "
                         "--report-to tensorboard,wandb), or none")
    return list(dict.fromkeys(n for n in names if n != "none"))


def with_report_to(recipe: Recipe, values: Sequence[str] | None) -> Recipe:
    """``recipe`` with ``logging.report_to`` replaced by ``--report-to values`` (None: unchanged),
    after checking that each tracker is installed.

    Raises:
        SimrlError: an unknown or missing tracker.
    """
    if values:
        names = parse_report_to(values)
        recipe = recipe.model_copy(update={"logging": recipe.logging.model_copy(update={"report_to": names})})
    check_installed(recipe.logging.report_to)
    return recipe


def check_installed(names: Sequence[str]) -> None:
    """Raise :class:`SimrlError` naming the first tracker whose package is not installed."""
    for name in names:
        if importlib.util.find_spec(_PACKAGES[name]) is None:
            raise SimrlError(f"logging.report_to: {name} is not installed; {_INSTALL} (or pip install {name}), "
                             "or drop it from --report-to / the recipe")


@dataclass(frozen=True)
class RunTracking:
    """What one run is called in the trackers and where their files go (see the module docstring)."""

    backends: tuple[str, ...]
    project: str
    group: str
    name: str
    arm: str
    seed: int
    root: Path
    config: dict[str, Any] = field(default_factory=dict)
    board: str = ""

    @property
    def tensorboard_dir(self) -> Path:
        """This run's TensorBoard folder: ``root/tensorboard/<arm>/seed-<S>`` (``root/tensorboard/<board>``
        for a run that is not an arm's, e.g. ``baselines/untrained/seed-0``)."""
        return self.root / "tensorboard" / (self.board or f"{self.arm}/seed-{self.seed}")

    def wandb_id(self) -> str:
        """This run's W&B id, kept in ``root/wandb-ids/<name>`` so that a resumed run, and the ablation
        adding its held-out results, continue the same W&B run (W&B resumes by id, not by name)."""
        path = self.root / "wandb-ids" / self.name
        if path.is_file() and (known := path.read_text(encoding="utf-8").strip()):
            return known
        import uuid

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new := uuid.uuid4().hex[:16], encoding="utf-8")
        return new

    def env(self) -> dict[str, str]:
        """Environment variables that point TRL's and verl's own trackers at this run's group and folders
        (a variable already set by the user for W&B's or trackio's folder is kept). Empty without trackers."""
        if not self.backends:
            return {}
        out = {"WANDB_PROJECT": self.project, "WANDB_RUN_GROUP": self.group,
               "WANDB_DIR": os.environ.get("WANDB_DIR") or str(self.root),
               "TRACKIO_DIR": os.environ.get("TRACKIO_DIR") or str(self.root / "trackio")}
        if "tensorboard" in self.backends:
            out |= {"TENSORBOARD_LOGGING_DIR": str(self.tensorboard_dir), "TENSORBOARD_DIR": str(self.tensorboard_dir)}
        return out


def run_tracking(recipe: Recipe, arm: str, seed: int, out: str | Path) -> RunTracking:
    """The tracking of ``arm`` x ``seed`` of ``recipe`` whose runs live under ``out`` (``OUT/<arm>/seed-<S>``)."""
    lg, out = recipe.logging, Path(out)
    root = Path(lg.dir).expanduser().resolve() if lg.dir else out.resolve() / "tracking"
    group = lg.group or out.resolve().name
    config = {"recipe": recipe.name, "arm": arm, "seed": seed, "group": group,
              "settings": recipe.model_dump(mode="json")}
    return RunTracking(tuple(lg.report_to), lg.project or f"simrl-{recipe.name}", group, f"{arm}-seed{seed}", arm,
                       seed, root, config)


@contextlib.contextmanager
def scoped_env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a ``with`` block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _TensorBoard:
    def __init__(self, run: RunTracking, first_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run logs its steps after the checkpoint again: TensorBoard hides those a crash left behind
        self.writer = SummaryWriter(str(run.tensorboard_dir), purge_step=first_step)
        if first_step is not None:  # None: adding to a finished run, whose config is there
            self.writer.add_text("config", "```\n" + json.dumps(run.config, indent=2) + "\n```", 0)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def image(self, tag: str, path: Path) -> None:
        from matplotlib.image import imread

        self.writer.add_image(tag, imread(str(path)), 0, dataformats="HWC")  # floats in [0, 1], RGB(A)

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, 0)

    def close(self) -> None:
        self.writer.close()


class _Trackio:
    def __init__(self, run: RunTracking, first_step: int | None) -> None:
        os.environ.setdefault("TRACKIO_DIR", str(run.root / "trackio"))  # read when trackio is first imported
        import trackio

        # the Run object, not trackio.log: trackio's current run is a context variable, and the trainer logs
        # from inside and outside its event loop
        self.run = trackio.init(project=run.project, name=run.name, group=run.group, config=run.config,
                                resume="allow", embed=False)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def image(self, tag: str, path: Path) -> None:
        import trackio

        image = getattr(trackio, "Image", None) or trackio.TrackioImage  # the name differs across releases
        self.run.log({tag: image(str(path))}, step=0)

    def text(self, tag: str, text: str) -> None:  # trackio has no text panel: the report stays in report.md
        pass

    def close(self) -> None:
        self.run.finish()


class _Wandb:
    def __init__(self, run: RunTracking, first_step: int | None) -> None:
        import wandb

        folder = Path(os.environ.get("WANDB_DIR") or run.root)
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=run.project, name=run.name, group=run.group, config=run.config,
                              dir=str(folder), reinit="finish_previous", id=run.wandb_id(), resume="allow")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def image(self, tag: str, path: Path) -> None:
        import wandb

        self.run.log({tag: wandb.Image(str(path))})

    def text(self, tag: str, text: str) -> None:
        import wandb

        self.run.log({tag: wandb.Html(f"<pre>{text}</pre>")})

    def close(self) -> None:
        self.run.finish()


_BACKENDS = {"tensorboard": _TensorBoard, "trackio": _Trackio, "wandb": _Wandb}


class Tracker:
    """The trackers of one embedded-trainer run: ``start`` opens them, ``log`` copies metrics, ``close`` ends.

    Args:
        run: from :func:`run_tracking` (no backends: every method does nothing).
    """

    def __init__(self, run: RunTracking) -> None:
        self.run = run
        self.open: dict[str, Any] = {}

    def start(self, first_step: int | None) -> None:
        """Open every backend; ``first_step`` is the first step this process logs (> 1 after a resume; None to
        add to a finished run: nothing is hidden and its config is not written again).

        Raises:
            SimrlError: a tracker is not installed or cannot start (e.g. W&B not logged in: the message
                says to run ``wandb login`` or set ``WANDB_MODE=offline``).
        """
        check_installed(self.run.backends)
        self.run.root.mkdir(parents=True, exist_ok=True)
        for name in self.run.backends:
            try:
                self.open[name] = _BACKENDS[name](self.run, first_step)
            except Exception as err:  # noqa: BLE001 - each tool raises its own kinds
                self.close()
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                hint = " (run `wandb login`, or set WANDB_MODE=offline)" if name == "wandb" else ""
                raise SimrlError(f"logging.report_to: {name} could not start: {first[:300]}{hint}") from None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Copy the numeric values of ``metrics`` (None and text left out) at ``step`` to every open tracker."""
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        for name, backend in list(self.open.items()):
            try:
                backend.log(values, step)
            except Exception as err:  # noqa: BLE001 - metrics.jsonl has the numbers; the run goes on
                print(f"warning: {name} stopped logging: {type(err).__name__}: {err}", file=sys.stderr)
                self.open.pop(name)

    def media(self, images: dict[str, Path], texts: dict[str, str]) -> None:
        """Add images (tag -> PNG file) and texts (tag -> text) to every open tracker that shows them."""
        for name, backend in list(self.open.items()):
            try:
                for tag, path in images.items():
                    backend.image(tag, path)
                for tag, text in texts.items():
                    backend.text(tag, text)
            except Exception as err:  # noqa: BLE001 - the files are on disk; the run goes on
                print(f"warning: {name} stopped logging: {type(err).__name__}: {err}", file=sys.stderr)
                self.open.pop(name)

    def close(self) -> None:
        """Flush and close every open tracker (errors are warnings)."""
        for name, backend in list(self.open.items()):
            try:
                backend.close()
            except Exception as err:  # noqa: BLE001
                print(f"warning: closing {name}: {type(err).__name__}: {err}", file=sys.stderr)
        self.open.clear()


def step_metrics(metrics: dict[str, Any], prefix: str = "train/") -> dict[str, Any]:
    """``metrics`` with ``prefix`` on every key except ``step`` (the tracker's x axis); nested dicts flattened
    (``skills: {cursor_followed: ..}`` -> ``train/skills/cursor_followed``), None values (not measured) left out.

    >>> step_metrics({"step": 3, "reward": 0.5, "skills": {"fault_met": 0.25, "fault_retried": None}})
    {'train/reward': 0.5, 'train/skills/fault_met': 0.25}
    """
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if k == "step" or v is None:
            continue
        if isinstance(v, dict):
            out |= step_metrics(v, f"{prefix}{k}/")
        else:
            out[f"{prefix}{k}"] = v
    return out


def eval_metrics(evaluation: dict[str, dict[str, float]]) -> dict[str, float]:
    """A run's evaluation (label -> metrics) as ``eval/<label>/<metric>`` scalars."""
    return {f"eval/{label}/{k}": v for label, m in evaluation.items() for k, v in m.items()}
