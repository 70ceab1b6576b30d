"""The files a recipe names (world spec or folder, schedules): checked and made absolute.

:func:`resolve_paths` is the second half of :func:`simrl.experiment.recipe.load_recipe` (after the YAML is
validated): relative paths are read from the recipe's folder (or, failing that, the working
directory, or a shipped file of :mod:`simrl.assets`), and every problem becomes one line of a
:class:`~simrl.errors.SpecError` naming the field.
"""

from __future__ import annotations

from pathlib import Path

from simrl.errors import SpecError
from simrl.experiment.recipe_arms import Arm, Grid, WorldRef


def _resolve(value: str, base: Path, kind: str = "world") -> Path:
    """A recipe's path: next to the recipe, else from the working directory, else a shipped name."""
    from simrl.assets import resolve

    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    if (base / p).exists():
        return (base / p).resolve()
    if p.exists():  # not next to the recipe, but from the working directory
        return p.resolve()
    shipped = resolve(value, kind)
    return shipped.resolve() if shipped.is_file() else (base / p).resolve()


def _oneline(err: Exception) -> str:
    """A nested file's error on one line (``path: invalid schedule; perturbations.x: ...``)."""
    return "; ".join(line.strip() for line in str(err).splitlines())


def resolve_paths(world_ref: WorldRef, recipe_arms: dict[str, Arm], grid: Grid | None, base: Path,
                  source: str = "recipe") -> tuple[WorldRef, dict[str, Arm], Grid | None]:
    """Check the files of a recipe's world, arms and grid and make their paths absolute (relative ones are read
    from ``base``); returns the three with the paths replaced.

    The world must be a spec that validates or a world folder; each schedule a shipped name or a
    schedule file that validates.

    Raises:
        SpecError: one line per problem, naming the field (``arms.sim.schedule: schedule not found ...``).
    """
    from simrl.perturb import load_schedule
    from simrl.world import load_spec

    problems: list[str] = []
    world = _resolve(world_ref.spec, base)
    if world.is_dir():
        if not (world / "manifest.json").is_file():
            problems.append(f"  world.spec: {world} is a folder but not a world (no manifest.json)")
    else:
        try:
            load_spec(world)
        except SpecError as err:
            problems.append(f"  world.spec: {_oneline(err)}")

    def schedule(field: str, value: str) -> str:
        shipped = "/" not in value and not value.endswith((".yaml", ".yml"))
        path = value if shipped else str(_resolve(value, base, "schedule"))
        try:
            load_schedule(path)
        except SpecError as err:
            problems.append(f"  {field}: {_oneline(err)}")
        return path

    arms = {name: arm.model_copy(update={"schedule": schedule(f"arms.{name}.schedule", arm.schedule)})
            if arm.schedule else arm for name, arm in recipe_arms.items()}
    if grid is not None:
        grid = grid.model_copy(update={"schedules": [schedule(f"grid.schedules.{i}", s)
                                                     for i, s in enumerate(grid.schedules)]})
    if problems:
        raise SpecError(f"{source}: invalid recipe\n" + "\n".join(problems))
    return world_ref.model_copy(update={"spec": str(world)}), arms, grid
