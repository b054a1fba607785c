"""How much of a page is running prose. An index, a table of contents or a list of links is
mostly short entries: it matches many queries a little and answers none of them."""
from __future__ import annotations

import re

_FENCED = re.compile(r"```.*?(?:```|$)", re.S)
_BLOCK = re.compile(r"\n\s*\n|\n(?=[-*] )")
_SENTENCE_END = re.compile(r"[.!?:;)][\"')\]]?$")
MIN_SENTENCE_WORDS = 6


def prose_share(text: str) -> tuple[float, int]:
    """(share of the page's words that stand in sentence-like blocks, those words counted).

    Headings and code blocks are left out of both counts (code is content, not a list); table
    rows count as entries, never as prose: an index is often laid out as a table. A block is
    sentence-like when it has at least six words and ends like a sentence. A page with nothing
    left to count is prose (1.0, 0)."""
    total = prose = 0
    for block in _BLOCK.split(_FENCED.sub("\n\n", text)):
        lines = [ln for ln in block.strip().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        words = sum(len(ln.split()) for ln in lines)
        if not words:
            continue
        total += words
        if words >= MIN_SENTENCE_WORDS and not lines[-1].rstrip().endswith("|") \
                and _SENTENCE_END.search(lines[-1].rstrip()):
            prose += words
    return (prose / total if total else 1.0), total
