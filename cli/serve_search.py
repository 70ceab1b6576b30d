"""``simrl serve search``: the search engine over a world's corpus, over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def search(
    world: Annotated[Path, typer.Option("--world", "-w", help="World folder whose corpus is served "
                                                              "(from `simrl world generate`).")],
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=1, max=65535)] = 8000,
    cache: Annotated[bool, typer.Option(help="Read/write the index cache in WORLD/.index.")] = True,
) -> None:
    """Serve web_search / web_extractor and the Search-R1 /retrieve endpoint over a world's corpus.

    Builds the bm25s index on first use (cached in WORLD/.index, so later starts only load it),
    then serves until Ctrl-C: GET /health, GET /tools, POST /tools/web_search,
    POST /tools/web_extractor, POST /retrieve.
    """
    import socket
    import time

    import uvicorn

    from simrl.envs.search import SearchIndex
    from simrl.envs.search_server import make_app
    from simrl.errors import SimrlError

    with socket.socket() as probe:  # fail before the (slow) index load if the port is taken
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as err:
            raise SimrlError(f"cannot listen on {host}:{port} ({err.strerror}); choose another --port") from None
    start = time.perf_counter()
    index = SearchIndex.open(world, cache=cache, progress=lambda msg: typer.echo(msg, err=True))
    typer.echo(f"search index: {len(index)} documents ({time.perf_counter() - start:.1f}s)", err=True)
    url = f"http://{host}:{port}"
    typer.echo(f"serving {world} at {url}\n"
               f"  GET  {url}/health\n  GET  {url}/tools\n"
               f"  POST {url}/tools/web_search     {{\"query\": \"...\"}} or {{\"queries\": [...]}}\n"
               f"  POST {url}/tools/web_extractor  {{\"url\": \"...\"}}\n"
               f"  POST {url}/retrieve             {{\"queries\": [...], \"topk\": 3, \"return_scores\": true}}\n"
               "Ctrl-C to stop.")
    try:
        uvicorn.run(make_app(index, host=host), host=host, port=port, log_level="warning")
    finally:
        index.close()
