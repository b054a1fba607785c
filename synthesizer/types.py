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
