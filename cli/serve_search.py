"""``simrl serve search``: the search engine over a world's corpus, over HTTP."""

from __future__ import annotations

import typer


def search() -> None:
    """Serve web_search / web_extractor and the Search-R1 /retrieve endpoint over a world's corpus."""
    raise typer.Exit(1)
