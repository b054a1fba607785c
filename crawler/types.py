"""Data that flows out of the crawler."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Page:
    """The current version of one crawled page, as stored."""

    url: str
    title: str
    text: str  # headings as '#'-prefixed lines, paragraphs split by blank lines, code fenced
    content_hash: str
    lang: str = ""
    fetched_at: str = ""
    changed_at: str = ""
    modified_at: str = ""  # when the page says it last changed, ISO 8601 ("" when unknown)


@dataclass(frozen=True)
class CrawlReport:
    """What one crawl run did; `skipped` counts each reason a URL was not stored:

    not fetched   robots, trap (endless query variants or looping path), max_depth, max_pages
    fetch failed  http_<status>, timeout, connection_failed, connection_lost, too_large, redirect_loop
    not a page    not_html, binary, empty, redirect_out_of_scope
    alias         canonical (its canonical URL was already fetched by this crawl), duplicate
                  (same text as a stored page), near_duplicate (MinHash Jaccard >= near_duplicate_jaccard, or SimHash within near_duplicate_bits)
    """

    run_id: int
    fetched: int
    new: int
    changed: int
    unchanged: int
    deleted: int
    errors: int
    skipped: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    pages_total: int = 0
    extracted: int = 0  # bodies run through extraction (0 on a recrawl of an unchanged site)
    retry_wait_s: float = 0.0  # seconds waited before retries (Retry-After, else backoff), summed
