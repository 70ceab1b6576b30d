"""Text handling of the search engine: index/query tokens, a page's plain text, and result snippets.

Tokens are lower-cased ``\\w\\w+`` words minus bm25s's English stop words, no stemming (the same for
indexing and querying, :mod:`simrl.envs.search_index`). Snippets are a ~200-character window of a
page's plain text around the most query terms (:func:`snippet`), as shown by ``web_search``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_RULE = re.compile(r"^\|[-:| ]+\|[ \t]*$\n?", re.MULTILINE)
_ROW = re.compile(r"^\|(.*)\|[ \t]*$", re.MULTILINE)
_MARKS = re.compile(r"^(?:#+|[-*])[ \t]+|^\*|\*$", re.MULTILINE)


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


_STOP = _stopwords()


def tokenize(text: str) -> list[str]:
    """Index/query tokens of ``text``: lower-cased ``\\w\\w+`` words without English stop words."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def strip_links(markdown: str) -> str:
    """``markdown`` with every link ``[text](url)`` reduced to its ``text``."""
    return _LINK.sub(r"\1", markdown)


def plain_text(markdown: str) -> str:
    """A page's markdown as plain lines, without its leading ``# Title`` heading: links -> their
    text, table rules dropped, table cells as ``a: b``, heading / list / emphasis marks removed."""
    if markdown.startswith("# "):
        markdown = markdown.partition("\n")[2]
    text = _RULE.sub("", strip_links(markdown))
    text = _ROW.sub(lambda m: ": ".join(c.strip() for c in m.group(1).split("|") if c.strip()), text)
    return _MARKS.sub("", text)


def _occurrences(low: str, terms: Sequence[str], limit: int = 200) -> list[tuple[int, str]]:
    """``(position, term)`` of whole-word occurrences of ``terms`` in lower-cased ``low``, in order."""
    hits = []
    for term in terms:
        i = low.find(term)
        while i >= 0 and len(hits) < limit:
            j = i + len(term)
            if (i == 0 or not (low[i - 1].isalnum() or low[i - 1] == "_")) and \
                    (j == len(low) or not (low[j].isalnum() or low[j] == "_")):
                hits.append((i, term))
            i = low.find(term, j)
    return sorted(hits)


def snippet(text: str, terms: Sequence[str], width: int = 200) -> str:
    """About ``width`` characters of ``text`` (plain, one line) around the most query ``terms``.

    ``terms`` are query tokens (:func:`tokenize`). The window starts at a term occurrence and
    covers the most distinct terms (then the most occurrences, then the earliest); without a match
    it is the start of the text. Cut ends get ``...``.
    """
    flat = " ".join(text.split())
    hits = _occurrences(flat.lower(), terms)
    best, key = 0, (0, 0)
    for i, (pos, _) in enumerate(hits):
        inside = []
        for p, term in hits[i:]:
            if p >= pos + width - 40:
                break
            inside.append(term)
        if (len(set(inside)), len(inside)) > key:
            best, key = pos, (len(set(inside)), len(inside))
    start = max(0, min(best - 40, len(flat) - width))  # a full window, context before the terms
    if start:
        start = flat.find(" ", start) + 1 or start
    end = min(len(flat), start + width)
    if end < len(flat) and flat.rfind(" ", start, end) > start:
        end = flat.rfind(" ", start, end)
    return ("..." if start else "") + flat[start:end].strip() + ("..." if end < len(flat) else "")
