"""Fan-out search over index shards, fused on ranks.

Every shard is searched through the ordinary `HybridRetriever.search` (in this process, or in a
Ray actor: retriever/ray_shards.py), asked for all its fused candidates with their BM25 and
dense scores. The coordinator then rebuilds the two global candidate lists, BM25 by score and
dense by cosine, keeps the configured depth of each, and fuses them exactly as one index does
(RRF by default). Dense cosines are comparable across shards; BM25 scores are not quite (each
shard has its own document frequencies), which only matters where it changes the order of two
candidates from different shards: benchmarks/shards.py measures the effect on nDCG@10."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from retriever.config import RetrieveConfig
from retriever.fusion import reciprocal_rank_fusion, weighted_score_fusion
from retriever.hybrid import ENGINES, Filters, Hit, SearchResult

UNCAPPED = 1_000_000  # max_per_page for shard calls: the coordinator collapses pages itself


class ShardedRetriever:
    """Searches shards (objects with HybridRetriever's `search`) and fuses their candidates."""

    def __init__(self, shards: list, config: RetrieveConfig = RetrieveConfig(), index=None,
                 parallel: bool = True):
        self.shards = shards
        self.config = config
        self.index = index  # the ShardedIndex in this process, when there is one
        self._pool = ThreadPoolExecutor(max_workers=len(shards)) if parallel and len(shards) > 1 else None

    def shard_results(self, query: str, engines: str, filters: Filters) -> list[SearchResult]:
        """Every shard's fused candidates (both engines' full depth, every chunk of a page)."""
        depth = (self.config.bm25_candidates if engines != "dense" else 0) + \
                (self.config.dense_candidates if engines != "bm25" else 0)
        call = lambda shard: shard.search(query, k=max(1, depth), max_per_page=UNCAPPED, engines=engines,  # noqa: E731
                                          filters=filters, rerank=False)
        if self._pool is None:
            return [call(s) for s in self.shards]
        return list(self._pool.map(call, self.shards))

    def rerank(self, query: str, hits: list[Hit]) -> tuple[list[Hit], tuple[str, ...]]:
        """The hits as they are: the cross-encoder is not applied across shards (said in a note)."""
        return hits, (("rerank is not applied across shards",) if len(hits) > 1 else ())

    def search(self, query: str, k: int | None = None, max_per_page: int | None = None,
               engines: str = "hybrid", filters: Filters = Filters(), rerank: bool | None = None
               ) -> SearchResult:
        """Top `k` hits over all shards, like HybridRetriever.search over one index holding them."""
        if engines not in ENGINES:
            raise ValueError(f"engines must be one of {ENGINES}")
        cfg = self.config
        k = k or cfg.k
        max_per_page = max_per_page or cfg.max_chunks_per_page
        t = time.perf_counter()
        results = self.shard_results(query, engines, filters)
        timings = {"shards_ms": (time.perf_counter() - t) * 1000}
        notes = list(dict.fromkeys(n for r in results for n in r.notes))
        if rerank or (rerank is None and cfg.rerank):
            notes.append("not reranked: the cross-encoder is not applied across shards yet")
        t = time.perf_counter()
        hits = fuse_shard_hits([r.hits for r in results], cfg, k, max_per_page)
        timings["fuse_ms"] = (time.perf_counter() - t) * 1000
        return SearchResult(hits, timings, tuple(notes))


def fuse_shard_hits(per_shard: list[list[Hit]], cfg: RetrieveConfig, k: int, max_per_page: int) -> list[Hit]:
    """Global BM25 and dense lists from the shards' candidates, fused as one index fuses them.
    Candidates are keyed by (shard, chunk id): chunk ids are per shard."""
    by_key: dict[int, Hit] = {}
    lexical: list[tuple[int, float]] = []
    dense: list[tuple[int, float]] = []
    for s, hits in enumerate(per_shard):
        for h in hits:
            key = len(by_key)
            by_key[key] = h
            if h.bm25_score is not None:
                lexical.append((key, h.bm25_score))
            if h.dense_score is not None:
                dense.append((key, h.dense_score))
    # ties broken by (shard, rank in shard), i.e. insertion order, so results are deterministic
    lexical = sorted(lexical, key=lambda x: -x[1])[:cfg.bm25_candidates]
    dense = sorted(dense, key=lambda x: -x[1])[:cfg.dense_candidates]
    if cfg.fusion == "wsum":
        fused = weighted_score_fusion([lexical, dense], [cfg.bm25_weight, cfg.dense_weight])
    else:
        fused = reciprocal_rank_fusion([[c for c, _ in lexical], [c for c, _ in dense]], cfg.rrf_k,
                                       [cfg.bm25_weight, cfg.dense_weight])
    lex_rank = {c: r for r, (c, _) in enumerate(lexical, start=1)}
    dense_rank = {c: r for r, (c, _) in enumerate(dense, start=1)}
    per_page: dict[str, int] = {}
    out: list[Hit] = []
    for key, score in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0])):
        h = by_key[key]
        if per_page.get(h.url, 0) >= max_per_page:
            continue
        per_page[h.url] = per_page.get(h.url, 0) + 1
        out.append(replace(h, score=round(score, 6), bm25_rank=lex_rank.get(key), dense_rank=dense_rank.get(key),
                           bm25_score=h.bm25_score if key in lex_rank else None,
                           dense_score=h.dense_score if key in dense_rank else None))
        if len(out) >= k:
            break
    return out


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
