"""Options shared by several commands: one declaration, one default, choices derived from the code.

Enumerated options are checked when the command line is parsed, before a command's body runs (nothing
starts on a typo); their choices are the ``Literal`` types of :mod:`simrl.choices` that the models use,
or the environment registry (read when the option is parsed, so ``simrl --help`` stays instant).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from simrl.choices import PerturbMode, Split, Transport, WorldModelName, values

# Defaults shared by rollout, eval and wm eval (one place; the README and --help say the same).
SPLIT = "test"
MAX_TURNS = 60
CONCURRENCY = 4


def name_model(choices: tuple[str, ...], option: str) -> Callable[[str], str]:
    """A typer ``parser`` for ``NAME`` or ``NAME:MODEL`` values whose NAME must be one of ``choices``.

    The value stays a string; the NAME is checked when the command line is parsed (exit 2, one line).
    """

    def parse(value: str) -> str:
        name = str(value).partition(":")[0]
        if name not in choices:
            raise typer.BadParameter(f"{name!r} is not one of {', '.join(choices)} ({option} NAME or NAME:MODEL)")
        return str(value)

    return parse


def registered_env(value: str) -> str:
    """A typer ``parser`` checking an environment id against the registry (:func:`simrl.envs.base.registered`)."""
    from simrl.envs.base import registered

    known = registered()
    if value not in known:
        raise typer.BadParameter(f"{value!r} is not a registered environment: {', '.join(known)}")
    return value


def rollout_env(value: str) -> str:
    """A typer ``parser``: a registered environment id (built-in, an installed plugin's, or ``--import``'s)."""
    from simrl.envs.base import specs

    known = specs()
    if value not in known:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(known)} (your own: `simrl --import MODULE`, "
                                 "docs/plugins.md)")
    return value


WORLD_MODELS = ("real", *values(WorldModelName))
"""``--world-model`` names: ``real`` and the world-model backends."""

POLICY_HELP = ("`expert` (scripted: solves tasks through the real tools) or `openai:URL#MODEL` (any "
               "OpenAI-compatible endpoint with tool calling; #MODEL optional when the endpoint serves one "
               "model), e.g. openai:http://127.0.0.1:8000/v1#Qwen/Qwen3-8B.")
RECIPE_HELP = ("Recipe: a YAML path or the name of a shipped recipe, e.g. quickstart (an unknown name lists "
               "them all).")

SplitOpt = Annotated[Split, typer.Option(help="Task split (held-out worlds hold only test tasks).",
                                         rich_help_panel="Episodes")]
ModeOpt = Annotated[PerturbMode, typer.Option(
    help="How perturbations are applied: `inject` (in code, on any environment: guaranteed) or `control` (a "
         "control instruction to the world model, verified; needs --world-model).",
    rich_help_panel="Perturbations")]
TransportOpt = Annotated[Transport | None, typer.Option(
    help="mcp-world: stdio (a server subprocess per episode) or inprocess (fast).")]
MaxTurnsOpt = Annotated[int, typer.Option(help="Turn limit per episode.", min=1, rich_help_panel="Episodes")]
ConcurrencyOpt = Annotated[int, typer.Option(help="Episodes in flight at once.", min=1, rich_help_panel="Episodes")]
SetOpt = Annotated[list[str], typer.Option(
    "--set", help="Override a recipe field in Hydra's override grammar: KEY=VALUE with a dotted KEY (e.g. --set "
                  "budget.steps=2 --set seeds=[0,1]); validated like the file. A key the recipe does not have "
                  "is refused unless added with +KEY=VALUE (+arms.NAME.environment=real); ~KEY deletes one. "
                  "Repeat for several.")]
