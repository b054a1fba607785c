"""Retrieval settings (the [retrieve] table of the config)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrieveConfig:
    """Candidate depths per engine, fusion and result shaping."""

    k: int = 10
    bm25_candidates: int = 200
    dense_candidates: int = 200
    fusion: str = "rrf"  # "rrf" (reciprocal rank fusion) or "wsum" (normalised weighted score sum)
    rrf_k: int = 30
    bm25_weight: float = 0.25
    dense_weight: float = 1.0
    max_chunks_per_page: int = 1
    snippet_chars: int = 240
    max_query_chars: int = 2000
    title_boost: float = 1.0  # chunk BM25 field weights (title, heading path, body 1)
    heading_boost: float = 1.5
    page_weight: float = 1.0  # page-level BM25 ranking fused into hybrid (RRF weight; 0 turns it off)
    page_candidates: int = 100  # pages taken from the page-level BM25
    page_support: float = 0.1  # a page's best candidate chunk gains this share of its second best's fused score
    page_title_boost: float = 1.0  # page BM25 field weights (title, headings, URL path words, body 1)
    page_heading_boost: float = 1.0
    page_url_boost: float = 0.0
    list_page_weight: float = 0.5  # a list page (an index, a table of contents) keeps this share of its fused score; 1 = off
    list_page_prose: float = 0.15  # a page of 100+ words with less than this share of them in sentences is a list page
    rerank: bool = False
    rerank_candidates: int = 20
    rerank_weight: float = 1.0  # weight of the cross-encoder's rank against the fused rank (RRF, rrf_k)
    rerank_budget_ms: float = 1500.0
    rerank_max_tokens: int = 256
    rerank_threads: int = 2

    def __post_init__(self) -> None:
        if self.k < 1 or self.bm25_candidates < 0 or self.dense_candidates < 0 or self.page_candidates < 0 \
                or self.page_weight < 0:
            raise ValueError("k must be >= 1 and candidate depths and page_weight >= 0")
        if min(self.title_boost, self.heading_boost, self.page_title_boost, self.page_heading_boost,
               self.page_url_boost) < 0:
            raise ValueError("field boosts must be >= 0")
        if not 0 <= self.page_support <= 1:
            raise ValueError("page_support must be between 0 and 1")
        if not 0 <= self.list_page_weight <= 1 or not 0 <= self.list_page_prose <= 1:
            raise ValueError("list_page_weight and list_page_prose must be between 0 and 1")
        if self.fusion not in ("rrf", "wsum"):
            raise ValueError("fusion must be 'rrf' or 'wsum'")
        if self.rerank_candidates < 1 or self.rerank_budget_ms <= 0 or self.rerank_max_tokens < 16:
            raise ValueError("rerank_candidates must be >= 1, rerank_budget_ms > 0, rerank_max_tokens >= 16")
        if self.max_chunks_per_page < 1:
            raise ValueError("max_chunks_per_page must be at least 1")
