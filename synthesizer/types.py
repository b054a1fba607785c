"""What the synthesizer returns."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields


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
class Timings(Mapping):
    """Where an answer's time went. Read it like a dict of the figures that were measured
    (`t["total_ms"]`, `t.get("rerank_ms", 0)`, `dict(t)`); a stage that did not run is None
    and not a key."""

    retrieve_ms: float | None = None  # retrieval (and the rerank when slow mode was asked for)
    rerank_ms: float | None = None  # rerank of the hits auto mode already had, when it chose slow
    sub_questions_ms: float | None = None  # slow mode: retrieval for each part of a compound question
    model_load_ms: float | None = None  # first use of the model in this process
    prompt_tokens: int | None = None
    first_token_ms: float | None = None  # from the question to the first generated text
    generate_ms: float | None = None
    tokens: int | None = None  # text chunks streamed (about one per token)
    tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None  # after the first token
    threads: int | None = None  # llama.cpp threads the generation ran with
    model_citations_supported: int | None = None  # markers the model wrote that its passage supports
    model_citations_total: int | None = None
    citations_supported: int | None = None  # markers shown in the final answer, re-checked
    citations_total: int | None = None
    total_ms: float | None = None

    def __getitem__(self, key: str):
        value = getattr(self, key, None) if key in _TIMING_KEYS else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return (k for k in _TIMING_KEYS if getattr(self, k) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


_TIMING_KEYS = tuple(f.name for f in fields(Timings))


@dataclass(frozen=True)
class Answer:
    """A cited answer, or an abstention that lists the closest sources."""

    answer: str
    mode: str  # the mode that actually ran: fast | slow | extractive
    reason: str  # why this mode / why abstained
    abstained: bool
    citations: tuple[Citation, ...] = ()
    timings: Timings = field(default_factory=Timings)
    model: str = ""
    notes: tuple[str, ...] = ()
    sentences: tuple[SentenceSupport, ...] = ()  # empty for abstentions
    evidence: float | None = None  # the evidence gate's share of key terms in the best passages (None: not reached)
