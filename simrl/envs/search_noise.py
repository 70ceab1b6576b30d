"""What a real search engine has and a clean simulator lacks: irrelevant results and operational faults.

Options of the real ``search`` environment (:class:`simrl.envs.search.SearchEnv`); the oracle (the world's
ground truth through the same tools, :class:`simrl.envs.truth.SearchTruth`) has neither:

* ``noise_rate``: each of a query's :data:`~simrl.envs.search_tools.RESULTS_PER_QUERY` result slots is, with this
  probability, an irrelevant page (drawn uniformly from the corpus, shown with its own title, snippet and date)
  inserted before the ranked result at that slot; the list is then cut back to its length, so the lowest-ranked
  relevant results can drop out, as in a real engine's mixed-quality results.
* ``fault_rate``: each tool call fails with this probability before it runs: ``504 Gateway Timeout``, ``429 Too
  Many Requests`` (with a retry-after) or ``503 Service Unavailable``, one third each, as the record server's
  faults (:class:`simrl.records.server.Faults`, whose draws are reused).

Every draw is a pure function of the environment's ``seed``, the episode seed, the call's index in the episode
(counted from 0 over every tool call) and, for noise, the query's position and the slot: an episode meets the same
faults whatever the policy calls (as the record server's), and the same call gets the same results again.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from simrl.envs.search_index import SearchHit, SearchIndex
from simrl.envs.search_text import plain_text, snippet, tokenize
from simrl.records.server import Faults
from simrl.types import ToolCall, ToolResult

FAULT_TEXT = {
    "timeout": "504 Gateway Timeout: the search service did not answer in time; the request was not applied, retry it",
    "rate_limit": "429 Too Many Requests: rate limit exceeded; retry after {wait} s (Retry-After: {wait})",
    "unavailable": "503 Service Unavailable: the search service is temporarily unavailable; retry later",
}
"""The error text of each fault kind (:data:`simrl.records.server.FAULT_KINDS`)."""


def episode_seed(env_seed: int, seed: int) -> int:
    """The seed of an episode's draws: ``env_seed * 1000003 + seed`` (as the in-process record server's)."""
    return env_seed * 1000003 + seed


def fault(call: ToolCall, rate: float, seed: int, index: int) -> ToolResult | None:
    """The ``is_error`` result of call number ``index`` of the episode with draw seed ``seed``, or None (no fault)."""
    drawn = Faults(rate, seed).draw(index) if rate > 0 else None
    if drawn is None:
        return None
    kind, wait = drawn
    return ToolResult(name=call.name, call_id=call.call_id, is_error=True, content=FAULT_TEXT[kind].format(wait=wait))


def mixer(index: SearchIndex, rate: float, seed: int, call_index: int) -> Callable[[int, str, list[SearchHit]], list[SearchHit]]:
    """``mix(query position, query, ranked hits) -> hits`` with irrelevant pages inserted (see the module docstring)."""
    def mix(position: int, query: str, hits: list[SearchHit]) -> list[SearchHit]:
        if rate <= 0 or not hits:
            return hits
        rng = random.Random(f"simrl-search-noise-{seed}-{call_index}-{position}")
        terms = sorted(set(tokenize(query)))
        out, ranked = [], list(hits)
        for _ in range(len(hits)):
            if rng.random() < rate:
                doc = index.raw(rng.randrange(len(index)))
                out.append(SearchHit(url=doc["url"], title=doc["title"], date=doc.get("date"), score=0.0,
                                     snippet=snippet(plain_text(doc["text"]), terms)))
            elif ranked:
                out.append(ranked.pop(0))
        return out

    return mix
