"""Fan-out search over index shards, fused as one index fuses.

Every shard gives its ranked candidate lists for the query (`HybridRetriever.candidates`, in
this process or in a Ray actor: retriever/ray_shards.py): chunk BM25 and dense as (chunk, score),
page-level BM25 as (page, score), each at the configured depth, with the chunks they name. The
coordinator merges each list over the shards by score, cuts it to the same depth, ranks it, and
fuses the three global rankings with the single index's code (retriever.hybrid.fuse_lists), then
collapses pages, builds snippets and reranks with the cross-encoder exactly as one index does.

Dense cosines are comparable across shards; BM25 scores are not quite (each shard has its own
document frequencies and lengths), which only matters where it changes the order of two
candidates from different shards: benchmarks/shards.py measures the effect on nDCG@10."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from retriever.config import RetrieveConfig
from retriever.hybrid import (Candidates, Filters, Hit, SearchResult, collect_hits, fuse_lists,
                              page_depth, rerank_hits, search_args)


class ShardedRetriever:
    """Searches shards (objects with HybridRetriever's `candidates`) and fuses their lists."""

    def __init__(self, shards: list, config: RetrieveConfig = RetrieveConfig(), index=None,
                 parallel: bool = True):
        self.shards = shards
        self.config = config
        self.index = index  # the ShardedIndex in this process, when there is one
        self._pool = ThreadPoolExecutor(max_workers=len(shards)) if parallel and len(shards) > 1 else None

    def shard_candidates(self, query: str, engines: str, filters: Filters, k: int) -> list[Candidates]:
        """Every shard's ranked lists for `query`, in shard order."""
        call = lambda shard: shard.candidates(query, engines, filters, k)  # noqa: E731
        if self._pool is None:
            return [call(s) for s in self.shards]
        return list(self._pool.map(call, self.shards))

    def search(self, query: str, k: int | None = None, max_per_page: int | None = None,
               engines: str = "hybrid", filters: Filters = Filters(), rerank: bool | None = None
               ) -> SearchResult:
        """Top `k` hits over all shards, like HybridRetriever.search over one index holding them."""
        cfg = self.config
        k, max_per_page = search_args(cfg, engines, k, max_per_page)
        notes: list[str] = []
        query = (query or "").strip()
        if len(query) > cfg.max_query_chars:
            notes.append(f"query truncated from {len(query)} to {cfg.max_query_chars} characters")
            query = query[:cfg.max_query_chars]
        if not query:
            return SearchResult([], {}, tuple(notes))
        t = time.perf_counter()
        results = self.shard_candidates(query, engines, filters, k)
        timings = {"shards_ms": (time.perf_counter() - t) * 1000}
        notes += dict.fromkeys(n for r in results for n in r.notes)
        t = time.perf_counter()
        merged = merge_candidates(results, cfg, engines, k)
        rerank = cfg.rerank if rerank is None else rerank
        hits = fuse_merged(merged, query, engines, cfg, max(k, cfg.rerank_candidates) if rerank else k, max_per_page)
        timings["fuse_ms"] = (time.perf_counter() - t) * 1000
        if rerank and len(hits) > 1:
            t = time.perf_counter()
            hits = rerank_hits(query, hits, cfg, passage_text, notes)
            timings["rerank_ms"] = (time.perf_counter() - t) * 1000
        return SearchResult(hits[:k], timings, tuple(notes))

    def rerank(self, query: str, hits: list[Hit]) -> tuple[list[Hit], tuple[str, ...]]:
        """Reorder hits already retrieved for `query` with the cross-encoder, as
        HybridRetriever.rerank does (the passages are the hits' own title, heading and text)."""
        notes: list[str] = []
        if len(hits) < 2:
            return hits, ()
        return rerank_hits(query, hits, self.config, passage_text, notes), tuple(notes)


def passage_text(hit: Hit) -> str:
    """What the cross-encoder reads for a hit: its chunk's embed text, rebuilt from the hit."""
    from indexer.chunking import embed_text
    return embed_text(hit.title, hit.heading, hit.text)


class Merged:
    """The shards' lists merged into global ones, candidates keyed by (shard, chunk id) numbered
    in shard order: chunk ids repeat across shards."""

    def __init__(self) -> None:
        self.lexical: list[tuple[int, float]] = []
        self.dense: list[tuple[int, float]] = []
        self.page_ranks: dict[str, int] = {}
        self.chunks: dict[int, object] = {}
        self.chunk_ids: dict[int, int] = {}
        self.leads: dict[str, int] = {}
        self.list_pages: frozenset[str] = frozenset()


def merge_candidates(results: list[Candidates], cfg: RetrieveConfig, engines: str, k: int) -> Merged:
    """Each list merged over the shards by score and cut to the depth one index would take.
    Keys follow (shard, chunk id), so equal fused scores break ties as one index breaks them
    (by chunk id) within a shard, and by shard order across shards."""
    m = Merged()
    pairs = sorted({(s, c) for s, r in enumerate(results)
                    for c in [*(c for c, _ in r.lexical), *(c for c, _ in r.dense), *r.leads.values()]})
    keys = {pair: n for n, pair in enumerate(pairs)}
    for (s, cid), n in keys.items():
        m.chunk_ids[n] = cid
        if cid in results[s].chunks:  # a removed chunk still holds its rank, as in one index
            m.chunks[n] = results[s].chunks[cid]
    # sorted() is stable: equal scores keep shard order, then their order within the shard
    m.lexical = sorted(((keys[s, c], v) for s, r in enumerate(results) for c, v in r.lexical),
                       key=lambda x: -x[1])[:cfg.bm25_candidates]
    m.dense = sorted(((keys[s, c], v) for s, r in enumerate(results) for c, v in r.dense),
                     key=lambda x: -x[1])[:cfg.dense_candidates]
    pages = [(url, v, keys[s, r.leads[url]]) for s, r in enumerate(results) for url, v in r.pages]
    for rank, (url, _, lead) in enumerate(sorted(pages, key=lambda x: -x[1])[:page_depth(engines, cfg, k)], start=1):
        m.page_ranks[url] = rank
        m.leads[url] = lead
    m.list_pages = frozenset().union(*(r.list_pages for r in results))
    return m


def fuse_merged(m: Merged, query: str, engines: str, cfg: RetrieveConfig, wanted: int, max_per_page: int) -> list[Hit]:
    """The merged lists fused and collapsed exactly as HybridRetriever.search does."""
    fused = fuse_lists(engines, cfg, m.lexical, m.dense, m.page_ranks,
                       lambda key: m.chunks[key].url if key in m.chunks else None, m.leads.__getitem__,
                       m.list_pages)
    return collect_hits(fused, m.chunks.get, m.lexical, m.dense, m.page_ranks, query, cfg, wanted, max_per_page,
                        chunk_id_of=m.chunk_ids.__getitem__)


class QueryEmbeddingCache:
    """An embedder that remembers its last query vectors, so N in-process shards embed a query once."""

    def __init__(self, embedder, size: int = 8):
        self._embedder = embedder
        self._size = size
        self._cache: dict[str, object] = {}

    def embed_query(self, text: str):
        v = self._cache.get(text)
        if v is None:
            v = self._embedder.embed_query(text)
            if len(self._cache) >= self._size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[text] = v
        return v

    def __getattr__(self, name):
        return getattr(self._embedder, name)
