"""What the store already holds about each page, kept in memory for the length of a crawl.

Conditional GETs, the unchanged-body shortcut and duplicate detection ask this view instead
of querying DuckDB once per URL (those queries cost 1 to 3 ms each and dominated a crawl of the
PostgreSQL docs); the spider updates it as it stores pages, and the store gets the same
changes in batched transactions (`crawler.store.WriteBatch`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crawler.minhash import MinHashIndex


@dataclass
class Known:
    """One page row as far as crawling needs it."""

    content_hash: str
    body_hash: str | None
    etag: str | None
    last_modified: str | None
    deleted: bool
    simhash: int | None
    minhash: bytes | None = None  # crawler.minhash signature; None in rows stored before it existed


class SimIndex:
    """SimHash fingerprints of live pages, for the nearest one within a number of bits."""

    def __init__(self) -> None:
        self._hashes = np.zeros(1024, dtype=np.int64)
        self._urls: list[str | None] = []
        self._slot: dict[str, int] = {}

    def add(self, url: str, value: int) -> None:
        self.remove(url)
        n = len(self._urls)
        if n == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros(n, dtype=np.int64)])
        self._hashes[n] = value
        self._urls.append(url)
        self._slot[url] = n

    def remove(self, url: str) -> None:
        slot = self._slot.pop(url, None)
        if slot is not None:
            self._urls[slot] = None

    def nearest(self, value: int, max_bits: int, exclude: str) -> str | None:
        """The live page (not `exclude`) closest to `value` within `max_bits`, ties by URL."""
        n = len(self._urls)
        if not n:
            return None
        dist = np.bitwise_count(self._hashes[:n] ^ np.int64(value))
        best = None
        for i in np.flatnonzero(dist <= max_bits):
            url = self._urls[i]
            if url is None or url == exclude:
                continue
            key = (int(dist[i]), url)
            if best is None or key < best:
                best = key
        return None if best is None else best[1]


class KnownPages:
    """url -> Known for every page in the store (tombstones included), with lookups by exact
    content hash and by SimHash among the live ones."""

    def __init__(self, rows: dict[str, Known], near_jaccard: float = 0.7):
        self.pages = rows
        self._by_hash: dict[str, set[str]] = {}
        self._sims = SimIndex()
        self._mins = MinHashIndex(near_jaccard) if 0 < near_jaccard <= 1 else None
        for url, k in rows.items():
            if not k.deleted:
                self._index(url, k)

    def _index(self, url: str, k: Known) -> None:
        self._by_hash.setdefault(k.content_hash, set()).add(url)
        if k.simhash is not None:
            self._sims.add(url, k.simhash)
        if k.minhash and self._mins is not None:
            self._mins.add(url, k.minhash)

    def _unindex(self, url: str, k: Known) -> None:
        owners = self._by_hash.get(k.content_hash)
        if owners is not None:
            owners.discard(url)
            if not owners:
                del self._by_hash[k.content_hash]
        self._sims.remove(url)
        if self._mins is not None:
            self._mins.remove(url)

    def get(self, url: str) -> Known | None:
        return self.pages.get(url)

    def live(self, url: str) -> Known | None:
        k = self.pages.get(url)
        return None if k is None or k.deleted else k

    def live_urls(self) -> list[str]:
        return sorted(u for u, k in self.pages.items() if not k.deleted)

    def hash_owner(self, content_hash: str, url: str) -> str | None:
        """Another live page with exactly this text, if any (the smallest URL)."""
        owners = self._by_hash.get(content_hash, ())
        return min((u for u in owners if u != url), default=None)

    def near_owner(self, simhash: int, url: str, max_bits: int, minhash: bytes | None = None) -> str | None:
        """A live page that `url`'s text nearly duplicates: by MinHash/LSH when a signature is
        given (it catches short pages SimHash misses), else by SimHash within `max_bits`."""
        if minhash and self._mins is not None:
            owner = self._mins.nearest(minhash, url)
            if owner is not None:
                return owner
        return self._sims.nearest(simhash, max_bits, url) if max_bits >= 0 else None

    def put(self, url: str, k: Known) -> str:
        """Record a stored page; returns 'new', 'changed' or 'unchanged' as the store counts it."""
        old = self.pages.get(url)
        if old is None or old.deleted:
            outcome = "new"
        elif old.content_hash == k.content_hash:
            outcome = "unchanged"
        else:
            outcome = "changed"
        if old is not None and not old.deleted:
            self._unindex(url, old)
        self.pages[url] = k
        self._index(url, k)
        return outcome

    def update_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        """New validators of an unchanged page; one a response did not send stays as it was."""
        k = self.pages.get(url)
        if k is not None:
            k.etag, k.last_modified = etag or k.etag, last_modified or k.last_modified

    def tombstone(self, url: str) -> bool:
        """Mark a live page gone; returns False when there was no live page."""
        k = self.live(url)
        if k is None:
            return False
        self._unindex(url, k)
        k.deleted = True
        return True
