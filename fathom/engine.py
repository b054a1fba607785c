"""fathom.Engine: the Python API that the CLI, batch jobs and web UI all call."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

from core.errors import IndexNotFound, IndexProblem
from crawler.run import crawl as run_crawl
from crawler.store import CrawlStore
from crawler.types import CrawlReport
from fathom.config import Config
from indexer.build import IndexReport, build_index
from indexer.embedding import Embedder, load_embedder
from indexer.generations import current_generation
from indexer.hybrid_index import HybridIndex
from indexer.manifest import read_manifest
from retriever.evaluation import EvalResult, evaluate, load_judged
from retriever.hybrid import ENGINES, Filters, HybridRetriever, SearchResult
from synthesizer.engine import LLMFactory, Synthesizer
from synthesizer.evaluation import AnswerEval, evaluate_answers, load_questions
from synthesizer.types import Answer


def _pages_of(stores: list[str]):
    """The pages of several crawl stores (those of crawler processes that shared a frontier are
    disjoint); a URL found in more than one store is taken once, from its latest fetch."""
    newest: dict[str, tuple[str, int]] = {}
    for i, path in enumerate(stores):
        with CrawlStore(path, read_only=True) as store:
            for page in store.pages():
                if page.url not in newest or page.fetched_at > newest[page.url][0]:
                    newest[page.url] = (page.fetched_at, i)
    for i, path in enumerate(stores):
        with CrawlStore(path, read_only=True) as store:
            yield from (p for p in store.pages() if newest[p.url][1] == i)


def default_data_dir() -> str:
    return os.environ.get("FATHOM_DATA") or os.path.join(os.getcwd(), "fathom-data")


class Engine:
    """One data directory: crawl store (crawl.duckdb) and index generations (index/).

    The embedder and LLM factory are injectable; by default they are loaded on first use."""

    def __init__(self, data_dir: str | None = None, config: Config | None = None,
                 embedder: Embedder | None = None, llm_factory: LLMFactory | None = None):
        self.data_dir = os.path.abspath(data_dir or default_data_dir())
        self.config = config or Config()
        self._embedder = embedder
        self._llm_factory = llm_factory
        self._index: HybridIndex | None = None
        self._synth: Synthesizer | None = None

    @property
    def store_path(self) -> str:
        return os.path.join(self.data_dir, "crawl.duckdb")

    @property
    def index_root(self) -> str:
        return os.path.join(self.data_dir, "index")

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.config.index.embedder, self.config.index.threads)
        return self._embedder

    # --- jobs ---------------------------------------------------------------------
    def crawl(self, seeds: list[str], max_pages: int | None = None, frontier: str | None = None) -> CrawlReport:
        """Crawl `seeds` (in a child process) into this data directory's store. With `frontier`
        (a redis:// URL; default [crawl] frontier) the crawl is shared with the other processes
        crawling the same seeds through that Redis (see crawler/distributed.py)."""
        os.makedirs(self.data_dir, exist_ok=True)
        config = self.config.crawl
        if frontier is not None:
            try:
                config = dataclasses.replace(config, frontier=frontier)
            except ValueError as exc:
                from core.errors import ConfigError
                raise ConfigError(str(exc)) from None
        return run_crawl(seeds, config, self.store_path, max_pages)

    def index(self, shards: int | None = None, stores: tuple[str, ...] = (), ray: str | None = None
              ) -> IndexReport:
        """Build a new index generation from the store and switch readers to it.

        `shards` N > 1 splits pages by a stable hash of their URL into N shards, each its own
        generation (indexer/shards.py); None keeps the current layout, 1 goes back to one index.
        `stores` are more crawl stores to index with this one (other crawler processes').
        `ray` ("auto" or a Ray address) embeds new chunks with Ray Data (indexer/ray_embed.py).
        With shards, the report sums the shards' counts."""
        from indexer.shards import build_shards, read_shard_manifest, remove_shard_manifest
        paths = [self.store_path, *stores]
        for path in paths:
            if not os.path.exists(path):
                from core.errors import StoreError
                raise StoreError(f"nothing crawled yet in {os.path.dirname(path)}; run `fathom crawl URL` first"
                                 if path == self.store_path else f"crawl store not found: {path}")
        if shards is None:
            current = read_shard_manifest(self.index_root) if os.path.isdir(self.index_root) else None
            shards = current.shards if current is not None else 1
        embed = None
        if ray is not None:
            from indexer.ray_embed import ray_embed
            embed = ray_embed(ray, self.config.index)
        if shards == 1 and len(paths) == 1:
            report = build_index(self.store_path, self.index_root, self.config.index, self.embedder, embed=embed)
            remove_shard_manifest(self.index_root)
        elif shards == 1:
            report = build_index("", self.index_root, self.config.index, self.embedder,
                                 pages=_pages_of(paths), embed=embed)
            remove_shard_manifest(self.index_root)
        else:
            reports = build_shards(lambda: _pages_of(paths), self.index_root, self.config.index, self.embedder,
                                   shards, embed=embed)
            report = dataclasses.replace(
                reports[0], pages=sum(r.pages for r in reports), chunks=sum(r.chunks for r in reports),
                added=sum(r.added for r in reports), removed=sum(r.removed for r in reports),
                embedded=sum(r.embedded for r in reports), elapsed_s=round(sum(r.elapsed_s for r in reports), 3),
                settings={**reports[0].settings, "shards": shards})
        self._index = None
        self._synth = None
        return report

    # --- queries --------------------------------------------------------------------
    def open_index(self) -> HybridIndex:
        """The current index generation, loaded and verified once, reloaded after `index()`."""
        if self._index is None:
            if not os.path.isdir(self.index_root):
                raise IndexNotFound(f"no index in {self.data_dir}; run `fathom crawl URL` then `fathom index`")
            from indexer.shards import ShardedIndex, read_shard_manifest
            if read_shard_manifest(self.index_root) is not None:
                self._index = ShardedIndex.open(self.index_root, self.config.index.embedder,
                                                threads=self.config.index.threads)
            else:
                self._index = HybridIndex.open(self.index_root, self.config.index.embedder,
                                               threads=self.config.index.threads)
        return self._index

    def retriever(self) -> HybridRetriever:
        """The retriever of the current index; over shards, a ShardedRetriever that fans out."""
        index = self.open_index()
        from indexer.shards import ShardedIndex
        if isinstance(index, ShardedIndex):
            from retriever.sharded import QueryEmbeddingCache, ShardedRetriever
            embedder = QueryEmbeddingCache(self.embedder)
            return ShardedRetriever([HybridRetriever(ix, embedder, self.config.retrieve) for ix in index.shards],
                                    self.config.retrieve, index)
        return HybridRetriever(index, self.embedder, self.config.retrieve)

    def ray_retriever(self, address: str = "auto"):
        """A retriever over this sharded index whose shards are Ray actors on `address` ("auto":
        a local Ray cluster). Results equal `retriever()`'s; close() stops the actors."""
        from retriever.ray_shards import start_shards
        return start_shards(self.index_root, self.config.index.embedder, self.config.retrieve, address)

    def search(self, query: str, k: int | None = None, filters: Filters = Filters(),
               rerank: bool | None = None) -> SearchResult:
        return self.retriever().search(query, k=k, filters=filters, rerank=rerank)

    def evaluate(self, path: str, engines: tuple[str, ...] = ENGINES, limit: int | None = None,
                 k: int = 10) -> list[EvalResult]:
        """Score retrieval on a qrels or QA file, once per engine setting."""
        judged = load_judged(path, limit)
        retriever = self.retriever()
        def run(e: str):  # "rerank" is hybrid + the cross-encoder
            engines_, rerank = ("hybrid", True) if e == "rerank" else (e, False)
            return lambda q: [h.url for h in retriever.search(q, k=k, max_per_page=1, engines=engines_,
                                                              rerank=rerank).hits]
        return [evaluate(run(e), judged, e, k) for e in engines]

    def evaluate_answers(self, qa_path: str, unanswerable_path: str | None = None,
                         modes: tuple[str, ...] = ("fast", "slow", "auto"), limit: int | None = None
                         ) -> list[AnswerEval]:
        """Answer every question of a QA file (and an unanswerable set) once per mode and score."""
        qa = load_questions(qa_path, limit)
        unanswerable = load_questions(unanswerable_path, limit) if unanswerable_path else []
        synth = self.synthesizer()
        return [evaluate_answers(lambda q, m=m: synth.answer(q, m), m, qa, unanswerable) for m in modes]

    def synthesizer(self) -> Synthesizer:
        if self._synth is None or self._synth.retriever.index is not self.open_index():
            self._synth = Synthesizer(self.retriever(), self.config.answer, self._llm_factory)
        return self._synth

    def ask(self, question: str, mode: str | None = None) -> Answer:
        return self.synthesizer().answer(question, mode)

    def ask_stream(self, question: str, mode: str | None = None) -> Iterator[str | Answer]:
        """Text deltas as generated, then the final Answer."""
        return self.synthesizer().stream(question, mode)

    def export_opensearch(self, path: str, name: str = "fathom") -> dict:
        """Write the current index (every shard) as an OpenSearch bulk body at `path` and the
        index body (settings + mapping) beside it, then validate the one against the other."""
        from indexer.opensearch import export, index_body, validate_bulk
        from indexer.shards import ShardedIndex
        index = self.open_index()
        indexes = index.shards if isinstance(index, ShardedIndex) else [index]
        out = export(indexes, path, name)
        m = indexes[0].manifest
        out["validated"] = validate_bulk(path, index_body(m.embedder_dim, m.hnsw_m, m.ef_construction, m.ef_search))
        return out

    def status(self) -> dict:
        """What is crawled and indexed, with the index's persisted settings."""
        out: dict = {"data_dir": self.data_dir, "crawl": None, "index": None}
        if os.path.exists(self.store_path):
            with CrawlStore(self.store_path, read_only=True) as store:
                out["crawl"] = store.stats()
        try:
            from indexer.shards import read_shard_manifest, shard_dir
            shards = read_shard_manifest(self.index_root) if os.path.isdir(self.index_root) else None
            if shards is not None:  # the shards' manifests, summed; settings from the first shard
                ms = [read_manifest(current_generation(shard_dir(self.index_root, i))) for i in range(shards.shards)]
                out["index"] = {"generation": max(m.generation for m in ms), "pages": sum(m.pages for m in ms),
                                "chunks": sum(m.chunks for m in ms), "built_at": max(m.built_at for m in ms),
                                "build_s": round(sum(m.build_s for m in ms), 3),
                                "settings": {**ms[0].settings(), "shards": shards.shards, "shard_hash": shards.hash},
                                "shards": [{"dir": d, "generation": m.generation, "pages": m.pages, "chunks": m.chunks}
                                           for d, m in zip(shards.dirs, ms)]}
                return out
            gen = current_generation(self.index_root)
            manifest = read_manifest(gen)
            out["index"] = {"generation": manifest.generation, "pages": manifest.pages,
                            "chunks": manifest.chunks, "built_at": manifest.built_at,
                            "build_s": manifest.build_s, "settings": manifest.settings(),
                            "manifest": dataclasses.asdict(manifest) | {"files": len(manifest.files)}}
        except IndexNotFound:
            pass
        except IndexProblem as exc:  # show what is wrong instead of failing the whole status
            out["index"] = {"error": str(exc)}
        return out
