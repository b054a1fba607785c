"""What the synthesizer returns."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Citation:
    """A source the answer cites as [n]."""

    n: int
    url: str
    title: str
    heading: str
    snippet: str
    chunk_id: int
    passage: str = ""  # the passage text the model was shown; SentenceSupport spans index into it


@dataclass(frozen=True)
class SentenceSupport:
    """One sentence of the answer, the citations it carries and the passage span behind it.

    status: "supported" (the model's own marker checked out), "reattached" (the verifier chose
    the source the model did not name) or "unsupported" (kept without a source)."""

    text: str
    citations: tuple[int, ...]
    status: str
    support: float  # share of the sentence's content words found in its first cited passage
    span: str = ""  # exact text of Citation.passage that supports it (first cited source)
    span_start: int = -1  # character offsets of `span` in that Citation.passage
    span_end: int = -1


@dataclass(frozen=True)
class Answer:
    """A cited answer, or an abstention that lists the closest sources."""

    answer: str
    mode: str  # the mode that actually ran: fast | slow | extractive
    reason: str  # why this mode / why abstained
    abstained: bool
    citations: tuple[Citation, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    model: str = ""
    notes: tuple[str, ...] = ()
    sentences: tuple[SentenceSupport, ...] = ()  # empty for abstentions
