"""Hybrid retrieval: BM25 (tantivy) and dense (hnswlib) candidates fused by RRF,
collapsed per page, with a plain-text snippet around the query terms."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import numpy as np

from core.errors import QueryError
from indexer.embedding import Embedder
from indexer.filtering import DATE_FIELDS, date_bounds, in_date_range, lang_key
from indexer.hybrid_index import HybridIndex
from indexer.lexical import query_terms
from indexer.pages import PLAIN_BOOSTS
from retriever.config import RetrieveConfig
from retriever.fusion import reciprocal_rank_fusion, weighted_score_fusion


ENGINES = ("hybrid", "bm25", "dense", "page", "naive")


@dataclass(frozen=True)
class Filters:
    """Restrict results to URLs under `url_prefix`, on one of `hosts`, whose page's `date_field`
    (changed_at, fetched_at or modified_at) lies in `since`..`until` (ISO dates; a date-only
    `until` includes its day; pages without that date are excluded), and in one of `langs`
    (primary subtag: "en" matches "en-US"). Both engines apply them before taking candidates;
    the semantics live in indexer.filtering so tantivy and the dense side agree."""

    url_prefix: str = ""
    hosts: tuple[str, ...] = ()
    since: str = ""
    until: str = ""
    date_field: str = "changed_at"
    langs: tuple[str, ...] = ()
    _bounds: tuple = field(default=(None, None), init=False, repr=False, compare=False)
    _langs: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.date_field not in DATE_FIELDS:
            raise QueryError(f"date_field must be one of {', '.join(DATE_FIELDS)}, got {self.date_field!r}")
        # a malformed date or an empty range fails here, loudly; parsed once per query
        object.__setattr__(self, "_bounds", date_bounds(self.since, self.until))
        object.__setattr__(self, "_langs", frozenset(map(lang_key, self.langs)))

    def active(self) -> bool:
        return bool(self.url_prefix or self.hosts or self.since or self.until or self.langs)

    def allows(self, url: str, chunk=None) -> bool:
        """Whether a result at `url` passes; date and language filters need its `chunk`."""
        if self.url_prefix and not url.startswith(self.url_prefix):
            return False
        if self.hosts and urlsplit(url).netloc not in self.hosts:
            return False
        if self.since or self.until:
            if chunk is None or not in_date_range(getattr(chunk, self.date_field, ""), *self._bounds):
                return False
        if self.langs:
            return chunk is not None and lang_key(chunk.lang) in self._langs
        return True


@dataclass(frozen=True)
class Hit:
    """One retrieved passage with where it came from and why it ranked."""

    chunk_id: int
    url: str
    title: str
    heading: str
    text: str
    snippet: str
    score: float
    bm25_rank: int | None = None  # 1-based; None when BM25 did not return it
    dense_rank: int | None = None
    bm25_score: float | None = None
    dense_score: float | None = None  # cosine similarity
    page_rank: int | None = None  # 1-based rank of the chunk's page in the page-level BM25
    rerank_rank: int | None = None  # 1-based rank among the reranked candidates
    rerank_score: float | None = None  # cross-encoder logit


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()



def search_args(cfg: RetrieveConfig, engines: str, k: int | None, max_per_page: int | None) -> tuple[int, int]:
    """Checked `engines`; `k` and `max_per_page` with the config's defaults filled in."""
    if engines not in ENGINES:
        raise QueryError(f"engines must be one of {ENGINES}")
    return k or cfg.k, max_per_page or cfg.max_chunks_per_page

class HybridRetriever:
    """Searches one loaded HybridIndex with one embedder."""

    def __init__(self, index: HybridIndex, embedder: Embedder, config: RetrieveConfig = RetrieveConfig()):
        self.index = index
        self.embedder = embedder
        self.config = config

    def search(self, query: str, k: int | None = None, max_per_page: int | None = None,
               engines: str = "hybrid", filters: Filters = Filters(), rerank: bool | None = None
               ) -> SearchResult:
        """Top `k` hits, at most `max_per_page` chunks of one page; never raises on odd input.

        `engines` is "hybrid" (chunk BM25, dense and page BM25, fused), or for evaluation "bm25",
        "dense" or "page" (page-level BM25, title x2 + body) alone, or "naive" (RRF k=60 of that
        page BM25 and dense: the baseline of shared/eval/README.md).
        `filters` are applied inside both engines, before their top candidates are taken.
        `rerank` (default: the config's) reorders the best candidates with the cross-encoder."""
        cfg = self.config
        k, max_per_page = search_args(cfg, engines, k, max_per_page)
        notes: list[str] = []
        timings: dict[str, float] = {}
        query = (query or "").strip()
        if len(query) > cfg.max_query_chars:
            notes.append(f"query truncated from {len(query)} to {cfg.max_query_chars} characters")
            query = query[:cfg.max_query_chars]
        if not query or not self.index.chunks:
            return SearchResult([], timings, tuple(notes))
        cands = self.candidates(query, engines, filters, k)
        notes += cands.notes
        timings.update(cands.timings)
        t = time.perf_counter()
        chunks = self.index.chunks
        page_ranks = {url: r for r, (url, _) in enumerate(cands.pages, start=1)}
        fused = fuse_lists(engines, cfg, cands.lexical, cands.dense, page_ranks,
                           lambda cid: chunks[cid].url if cid in chunks else None,
                           lambda url: self.index.page_chunks[url][0], cands.list_pages)
        rerank = cfg.rerank if rerank is None else rerank
        hits = collect_hits(fused, chunks.get, cands.lexical, cands.dense, page_ranks, query, cfg,
                            max(k, cfg.rerank_candidates) if rerank else k, max_per_page)
        timings["fuse_ms"] = (time.perf_counter() - t) * 1000
        if rerank and len(hits) > 1:
            t = time.perf_counter()
            hits = self._rerank(query, hits, notes)
            timings["rerank_ms"] = (time.perf_counter() - t) * 1000
        return SearchResult(hits[:k], timings, tuple(notes))

    def candidates(self, query: str, engines: str = "hybrid", filters: Filters = Filters(),
                   k: int | None = None) -> Candidates:
        """The ranked lists `search` fuses for `query` (already stripped and truncated), each at
        its configured depth, with the chunks they name: what a shard sends to the coordinator."""
        cfg = self.config
        k = k or cfg.k
        notes: list[str] = []
        timings: dict[str, float] = {}
        if not query or not self.index.chunks:
            return Candidates([], [], [], {}, {}, timings, ())
        t = time.perf_counter()
        lexical = self.index.lexical.search(query, cfg.bm25_candidates if engines in ("hybrid", "bm25") else 0,
                                            filters.url_prefix, filters.hosts, since=filters.since,
                                            until=filters.until, date_field=filters.date_field,
                                            langs=filters.langs, boosts={"title": cfg.title_boost,
                                            "heading": cfg.heading_boost, "body": 1.0})
        timings["bm25_ms"] = (time.perf_counter() - t) * 1000
        dense: list[tuple[int, float]] = []
        if cfg.dense_candidates > 0 and engines in ("hybrid", "dense", "naive") \
                and self.index.dense.get_current_count():
            t = time.perf_counter()
            qvec = self.embedder.embed_query(query)
            timings["embed_ms"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            dense = self._dense(np.asarray(qvec, np.float32), cfg.dense_candidates, filters)
            timings["dense_ms"] = (time.perf_counter() - t) * 1000
        pages: list[tuple[str, float]] = []
        wants_pages = engines in ("page", "naive") or (engines == "hybrid" and cfg.page_weight > 0)
        if wants_pages and self.index.pages is None:
            notes.append("this index generation has no page-level BM25 (built before it); "
                         "run `fathom index --rebuild` to add it")
        if wants_pages:
            t = time.perf_counter()
            pages = self._pages(query, page_depth(engines, cfg, k), filters, PLAIN_BOOSTS if engines != "hybrid" else {
                "title": cfg.page_title_boost, "headings": cfg.page_heading_boost,
                "urlwords": cfg.page_url_boost, "body": 1.0})
            timings["page_ms"] = (time.perf_counter() - t) * 1000
        chunks = self.index.chunks
        leads = {url: self.index.page_chunks[url][0] for url, _ in pages}
        named = {cid: chunks[cid] for cid, _ in lexical if cid in chunks}
        named.update((cid, chunks[cid]) for cid, _ in dense if cid in chunks)
        named.update((cid, chunks[cid]) for cid in leads.values())
        lists: frozenset[str] = frozenset()
        if engines == "hybrid" and cfg.list_page_weight < 1:
            lists = frozenset(url for url in {c.url for c in named.values()} if self.is_list_page(url))
        return Candidates(lexical, dense, pages, named, leads, timings, tuple(notes), lists)

    def is_list_page(self, url: str) -> bool:
        """Whether page `url` is mostly short entries, not sentences: an index, a table of
        contents, a list of links. Such a page matches many queries a little and answers none."""
        share, words = self.index.prose_share(url)
        return words >= 100 and share < self.config.list_page_prose

    def rerank(self, query: str, hits: list[Hit]) -> tuple[list[Hit], tuple[str, ...]]:
        """Reorder hits already retrieved for `query` with the cross-encoder (as `search(...,
        rerank=True)` does), without searching again; returns the hits and any notes."""
        notes: list[str] = []
        if len(hits) < 2:
            return hits, ()
        return self._rerank(query, hits, notes), tuple(notes)

    def _rerank(self, query: str, hits: list[Hit], notes: list[str]) -> list[Hit]:
        return rerank_hits(query, hits, self.config, lambda h: self.index.chunks[h.chunk_id].embed_text(), notes)

    def _pages(self, query: str, n: int, filters: Filters, boosts: dict[str, float]) -> list[tuple[str, float]]:
        """(url, score) of the `n` best pages by page-level BM25 that pass `filters` (and have
        chunks), best first."""
        if self.index.pages is None or n <= 0:
            return []
        ranked: list[tuple[str, float]] = []
        for url, score in self.index.pages.search(query, n * 3 if filters.active() else n, boosts):
            lead = self.index.page_chunks.get(url)
            if lead and filters.allows(url, self.index.chunks[lead[0]]):
                ranked.append((url, score))
                if len(ranked) >= n:
                    break
        return ranked

    def _dense(self, qvec: np.ndarray, n: int, filters: Filters) -> list[tuple[int, float]]:
        """(chunk_id, cosine) of the `n` nearest chunks that pass `filters`. A selective filter
        (<= 2000 chunks) is searched exactly; a broad one through hnswlib's filter callback."""
        dense = self.index.dense
        if not filters.active():
            labels, dists = dense.knn_query(qvec.reshape(1, -1), k=min(n, dense.get_current_count()))
            return [(int(l), 1.0 - float(d)) for l, d in zip(labels[0], dists[0])]
        allowed = [cid for cid, c in self.index.chunks.items() if filters.allows(c.url, c)]
        if not allowed:
            return []
        if len(allowed) <= 2000:
            vecs = np.asarray(dense.get_items(allowed), np.float32)
            sims = vecs @ (qvec / max(float(np.linalg.norm(qvec)), 1e-12))
            top = np.argsort(-sims)[:n]
            return [(allowed[i], float(sims[i])) for i in top]
        ok = set(allowed)
        labels, dists = dense.knn_query(qvec.reshape(1, -1), k=min(n, len(allowed)), filter=lambda l: l in ok)
        return [(int(l), 1.0 - float(d)) for l, d in zip(labels[0], dists[0])]



@dataclass(frozen=True)
class Candidates:
    """One index's ranked lists for a query, before fusion: chunk BM25 and dense as (chunk id,
    score) best first, page-level BM25 as (url, score) best first; `chunks` holds every chunk
    they name, `leads` each ranked page's first chunk id (the chunk a page enters with) and
    `list_pages` those of their pages that hybrid fusion demotes (RetrieveConfig.list_page_weight)."""

    lexical: list[tuple[int, float]]
    dense: list[tuple[int, float]]
    pages: list[tuple[str, float]]
    chunks: dict
    leads: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    list_pages: frozenset[str] = frozenset()  # the named pages that are mostly short entries (indexes, contents)


def page_depth(engines: str, cfg: RetrieveConfig, k: int) -> int:
    """How many pages the page-level BM25 contributes."""
    return cfg.page_candidates if engines == "hybrid" else max(cfg.bm25_candidates, k)


def fuse_lists(engines: str, cfg: RetrieveConfig, lexical: list[tuple[int, float]], dense: list[tuple[int, float]],
               page_ranks: dict[str, int], url_of, lead_of, list_pages: frozenset[str] = frozenset()
               ) -> dict[int, float]:
    """Fused score per candidate key of the ranked lists, as `engines` asks: `url_of(key)` is a
    chunk's page (None when unknown), `lead_of(url)` the key a ranked page enters with; hybrid
    scores of chunks on `list_pages` are scaled by cfg.list_page_weight."""
    if engines == "page":
        return {lead_of(u): 1.0 / r for u, r in page_ranks.items()}
    if engines == "naive":
        return with_pages(reciprocal_rank_fusion([[c for c, _ in dense]], 60), page_ranks, 60, 1.0, url_of, lead_of)
    if cfg.fusion == "wsum":
        fused = weighted_score_fusion([lexical, dense], [cfg.bm25_weight, cfg.dense_weight])
    else:
        fused = reciprocal_rank_fusion([[c for c, _ in lexical], [c for c, _ in dense]], cfg.rrf_k,
                                       [cfg.bm25_weight, cfg.dense_weight])
    if engines == "hybrid" and cfg.page_support > 0:
        fused = with_support(fused, cfg.page_support, url_of)
    if engines == "hybrid" and page_ranks:
        fused = with_pages(fused, page_ranks, cfg.rrf_k, cfg.page_weight, url_of, lead_of)
    if engines == "hybrid" and list_pages:
        # an index or a contents page holds every query's words once and answers none: on four
        # documentation sites, halving its score gave nDCG@10 +0.014 on held-out queries (RESULTS, issue 14)
        fused = {key: s * cfg.list_page_weight if url_of(key) in list_pages else s for key, s in fused.items()}
    return fused


def with_support(fused: dict[int, float], share: float, url_of) -> dict[int, float]:
    """A page's best candidate chunk gains `share` of the fused score of the page's second-best
    candidate chunk: two chunks that both match say more about a page than one does."""
    best: dict[str, tuple[float, int]] = {}
    second: dict[str, float] = {}
    for cid, score in fused.items():
        url = url_of(cid)
        if url is None:
            continue
        top = best.get(url)
        if top is None or (score, -cid) > (top[0], -top[1]):
            if top is not None:
                second[url] = max(second.get(url, 0.0), top[0])
            best[url] = (score, cid)
        else:
            second[url] = max(second.get(url, 0.0), score)
    out = dict(fused)
    for url, extra in second.items():
        out[best[url][1]] += share * extra
    return out


def with_pages(fused: dict[int, float], page_ranks: dict[str, int], k: int, weight: float,
               url_of, lead_of) -> dict[int, float]:
    """Fuse the page ranking in: every candidate chunk gains weight / (k + its page's rank);
    a ranked page with no candidate chunk enters with its first chunk."""
    out = dict(fused)
    seen: set[str] = set()
    for cid in fused:
        url = url_of(cid)
        if url in page_ranks:
            out[cid] += weight / (k + page_ranks[url])
            seen.add(url)
    for url, r in page_ranks.items():
        if url not in seen:
            out[lead_of(url)] = weight / (k + r)
    return out


def collect_hits(fused: dict[int, float], chunk_of, lexical: list[tuple[int, float]], dense: list[tuple[int, float]],
                 page_ranks: dict[str, int], query: str, cfg: RetrieveConfig, wanted: int, max_per_page: int,
                 chunk_id_of=None) -> list[Hit]:
    """The best `wanted` hits by fused score (ties by key), at most `max_per_page` per page;
    `chunk_of(key)` gives a candidate's chunk, `chunk_id_of(key)` its chunk id (default: the key)."""
    lex_info = {c: (r, s) for r, (c, s) in enumerate(lexical, start=1)}
    dense_info = {c: (r, s) for r, (c, s) in enumerate(dense, start=1)}
    per_page: dict[str, int] = {}
    terms = set(query_terms(query))
    hits: list[Hit] = []
    for cid, score in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0])):
        chunk = chunk_of(cid)
        if chunk is None:
            continue
        if per_page.get(chunk.url, 0) >= max_per_page:
            continue
        per_page[chunk.url] = per_page.get(chunk.url, 0) + 1
        lr, ls = lex_info.get(cid, (None, None))
        dr, ds = dense_info.get(cid, (None, None))
        hits.append(Hit(chunk_id=cid if chunk_id_of is None else chunk_id_of(cid), url=chunk.url, title=chunk.title,
                        heading=chunk.heading, text=chunk.text,
                        snippet=make_snippet(chunk.text, terms, cfg.snippet_chars),
                        score=round(score, 6), bm25_rank=lr, dense_rank=dr, bm25_score=ls, dense_score=ds,
                        page_rank=page_ranks.get(chunk.url)))
        if len(hits) >= wanted:
            break
    return hits


def rerank_hits(query: str, hits: list[Hit], cfg: RetrieveConfig, text_of, notes: list[str]) -> list[Hit]:
    """Reorder the first candidates by their cross-encoder rank fused with their fused rank, as
    many as the time budget allows; the rest keep their fused order behind them. Without the
    model, the fused order stays. `text_of(hit)` is the passage the cross-encoder reads."""
    from core.errors import ModelUnavailable
    from retriever.rerank import load_reranker

    try:
        model = load_reranker(cfg.rerank_threads, cfg.rerank_max_tokens)
    except ModelUnavailable as exc:
        notes.append(f"not reranked: {exc}")
        return hits
    pool = hits[:cfg.rerank_candidates]
    scores, n = model.rerank(query, [text_of(h) for h in pool], cfg.rerank_budget_ms)
    if n < len(pool):
        notes.append(f"reranked {n} of {len(pool)} candidates within the {cfg.rerank_budget_ms:.0f} ms budget")
    # Fuse the cross-encoder's ranking with the fused one (RRF again): on 300 pg_qrels queries
    # this gave nDCG@10 0.870 against 0.850 for the cross-encoder's order alone, 0.831 unreranked.
    ce_rank = {i: r for r, i in enumerate(sorted(range(n), key=lambda i: (-scores[i], i)), start=1)}
    mixed = {i: 1 / (cfg.rrf_k + i + 1) + cfg.rerank_weight / (cfg.rrf_k + ce_rank[i]) for i in range(n)}
    order = sorted(range(n), key=lambda i: (-mixed[i], i))
    reranked = [replace(pool[i], rerank_rank=ce_rank[i], rerank_score=round(scores[i], 4)) for i in order]
    return reranked + hits[n:]


_WORD = re.compile(r"\w+")


def make_snippet(text: str, terms: set[str], width: int = 240) -> str:
    """The `width`-character window of `text` holding the most query terms, as plain text."""
    flat = " ".join(text.replace("```", " ").split())
    if len(flat) <= width:
        return flat
    stems = {t[:5] for t in terms if len(t) > 2}
    hits = [m.start() for m in _WORD.finditer(flat) if m.group().lower()[:5] in stems]
    start = 0
    if hits:
        best, j = (0, hits[0]), 0
        for i, p in enumerate(hits):  # densest run of matches that fits in 2/3 of the width
            while p - hits[j] > width * 2 // 3:
                j += 1
            if i - j + 1 > best[0]:
                best = (i - j + 1, hits[j])
        start = max(0, best[1] - width // 4)
        if start:
            start = flat.rfind(" ", 0, start) + 1
    snippet = flat[start:start + width]
    if start + width < len(flat) and snippet.rfind(" ") > width // 2:
        snippet = snippet[:snippet.rfind(" ")]
    return ("… " if start > 0 else "") + snippet + (" …" if start + len(snippet) < len(flat) else "")
