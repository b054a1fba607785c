"""Compound questions split into the sub-questions they ask, so that slow mode can retrieve
for each part and answer from the union. Rules, not a model call: a split that is not clearly
two questions is not made."""
from __future__ import annotations

import re

from synthesizer.textutil import content_terms

_ASK = r"(?:what|how|why|when|where|which|who|whom|whose|is|are|can|could|does|do|did|should|would|will)"
# "What is X? How do I Y?" / "What is X; how do I Y?"
_SENTENCES = re.compile(r"(?<=[?;])\s+")
# "What is X, and how do I Y?" / "What is X and why does Y?" / "…, or should I Y?"
_CLAUSE = re.compile(rf",?\s+(?:and|or|but|also)\s+(?:also\s+)?(?={_ASK}\b)", re.I)
_REFERS = re.compile(r"\b(?:it|its|one|ones|them|they|this|that|these|those)\b", re.I)  # leans on the first part


def sub_questions(question: str, limit: int = 3) -> list[str]:
    """The parts of a compound question (at most `limit`), or [] when it asks one thing.

    A part that leans on the first part ("how do I write one?") borrows the first part's
    content words, so that it can be searched alone; a part that asks nothing new is dropped."""
    q = " ".join(question.split())
    parts: list[str] = []
    for sentence in _SENTENCES.split(q):
        parts.extend(p for p in _CLAUSE.split(sentence) if p)
    parts = [p.strip(" ,;") for p in parts if p.strip(" ,;")]
    if len(parts) < 2:
        return []
    asked = [p for p in parts if p.endswith("?") or re.match(rf"{_ASK}\b", p, re.I)]
    if len(asked) < 2:
        return []
    first_terms = content_terms(asked[0])
    out = []
    for i, p in enumerate(asked[:limit]):
        p = p[0].upper() + p[1:]
        if not p.endswith("?"):
            p = p.rstrip(".;,") + "?"
        own = content_terms(p)
        if i and not own - first_terms:
            continue  # asks nothing new ("and why?"): the whole question covers it
        if i and (len(own) < 2 or _REFERS.search(p)):
            borrowed = [w for w in re.findall(r"[\w.()-]+", asked[0]) if content_terms(w) & (first_terms - own)]
            p = f"{p} ({' '.join(dict.fromkeys(borrowed))})"
        out.append(p)
    return out if len(out) >= 2 else []
