"""simrl: simulated-environment reinforcement learning for LLM agents.

The package is organised as in the design notes (docs/design.md §3): ``simrl.world`` generates fictional
worlds (knowledge graph, corpus, tasks), ``simrl.reward`` holds the scorers, and ``simrl.cli`` is the
Typer application behind the ``simrl`` command.
"""

__version__ = "0.1.0"

from simrl.errors import SimrlError  # noqa: E402

__all__ = ["SimrlError", "__version__"]
