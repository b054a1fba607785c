"""Crawler-trap detection: URL patterns that generate pages without end."""
from __future__ import annotations

from collections import Counter, defaultdict
from urllib.parse import urlsplit

MAX_SEGMENT_REPEATS = 3  # /a/b/a/b/a/b/a/ comes from relative links that loop


class TrapGuard:
    """Flags a URL as a trap when its path already has `max_query_variants` distinct query
    strings (calendars, session ids, endless filters) or repeats one path segment more than
    MAX_SEGMENT_REPEATS times. Stateful: it counts the URLs it has let through."""

    def __init__(self, max_query_variants: int):
        self.max_query_variants = max_query_variants
        self.variants: defaultdict[str, set[str]] = defaultdict(set)

    def is_trap(self, url: str) -> bool:
        parts = urlsplit(url)
        segments = Counter(s for s in parts.path.split("/") if s)
        if segments and max(segments.values()) > MAX_SEGMENT_REPEATS:
            return True
        if not parts.query:
            return False
        key = f"{parts.netloc}{parts.path}"
        seen = self.variants[key]
        if parts.query not in seen and len(seen) >= self.max_query_variants:
            return True
        seen.add(parts.query)
        return False
