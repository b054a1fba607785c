"""fathom.Engine: the Python API that the CLI, batch jobs and web UI all call."""
from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from core.errors import IndexNotFound, IndexProblem
from crawler.run import crawl as run_crawl
from crawler.store import CrawlStore
from crawler.types import CrawlReport
from fathom.config import Config
from indexer.build import IndexReport, build_index
from indexer.embedding import Embedder, load_embedder, vector_space
from indexer.generations import current_generation
from indexer.hybrid_index import HybridIndex
from indexer.manifest import read_manifest, verify_files
from retriever.evaluation import EvalResult, evaluate, load_judged
from retriever.hybrid import Filters, HybridRetriever, SearchResult
from synthesizer.engine import LLMFactory, Synthesizer
from synthesizer.evaluation import AnswerEval, evaluate_answers, load_questions
from synthesizer.types import Answer


@dataclass(frozen=True)
class CrawlStatus:
    """What the crawl store holds."""

    pages: int
    deleted: int
    aliases: int
    last_run: dict | None = None  # run_id, started, ended and the CrawlReport of the last crawl


@dataclass(frozen=True)
class IndexStatus:
    """The current index generation and its persisted settings; `error` says why it is unusable."""

    generation: int = 0
    pages: int = 0
    chunks: int = 0
    built_at: str = ""
    build_s: float = 0.0
    settings: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    size_bytes: int = 0  # on disk, the current generation's files
    verified: str = ""  # how the files were checked: "size+mtime" or "sha256"
    error: str = ""
    serving: int | None = None  # with an error: the older generation searches fall back to, if any
    shards: list = field(default_factory=list)  # per shard of a sharded index: dir, generation, pages, chunks
    note: str = ""  # e.g. built with another embedder of the configured one's vector space


@dataclass(frozen=True)
class Status:
    """What `Engine.status()` returns: what is crawled and indexed in one data directory."""

    data_dir: str
    crawl: CrawlStatus | None = None
    index: IndexStatus | None = None

    def to_dict(self) -> dict:
        """The JSON shape of `fathom status --json` (an unusable index is just {"error": ...})."""
        index = None
        if self.index is not None:
            index = ({"error": self.index.error, "serving": self.index.serving} if self.index.error
                     else {k: v for k, v in dataclasses.asdict(self.index).items() if k not in ("error", "serving")})
        return {"data_dir": self.data_dir, "crawl": dataclasses.asdict(self.crawl) if self.crawl else None,
                "index": index}


def _embedder_note(built: str, configured: str) -> str:
    """What to say when the index was built with another embedder than the configured one."""
    if built == configured:
        return ""
    if vector_space(built) == vector_space(configured):
        return (f"built with embedder {built}; {configured} (configured) searches it as it is, and the "
                f"next `fathom index` re-embeds every chunk with {configured}")
    return f"built with embedder {built}, but {configured} is configured: run `fathom index --rebuild`"


def _dir_size(path: str) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            try:
                total += os.path.getsize(os.path.join(dirpath, n))
            except OSError:
                pass
    return total
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

    The embedder and LLM factory are injectable; by default they are loaded on first use.
    One Engine can be shared by threads: searches run concurrently, while answers generate one at a
    time (2 cores); `with Engine(...) as engine:` releases the models and index at the end."""

    def __init__(self, data_dir: str | None = None, config: Config | None = None,
                 embedder: Embedder | None = None, llm_factory: LLMFactory | None = None):
        self.data_dir = os.path.abspath(data_dir or default_data_dir())
        self.config = config or Config()
        self._embedder = embedder
        self._llm_factory = llm_factory
        self._index: HybridIndex | None = None
        self._synth: Synthesizer | None = None
        self._load_lock = threading.RLock()  # loading the index / embedder / synthesizer once
        self._answer_lock = threading.Lock()  # one answer generates at a time; searches never wait on it

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the loaded index, embedder and models (they are reloaded on next use)."""
        with self._load_lock:
            self._synth = None
            self._index = None

    @property
    def store_path(self) -> str:
        return os.path.join(self.data_dir, "crawl.duckdb")

    @property
    def index_root(self) -> str:
        return os.path.join(self.data_dir, "index")

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._load_lock:
                if self._embedder is None:
                    self._embedder = load_embedder(self.config.index.embedder, self.config.index.threads)
        return self._embedder

    # --- jobs ---------------------------------------------------------------------
    def crawl(self, seeds: list[str], max_pages: int | None = None, progress=None,
              crawl_config=None, frontier: str | None = None) -> CrawlReport:
        """Crawl `seeds` (in a child process) into this data directory's store. `progress(counts)`
        gets running counts; `crawl_config` replaces the [crawl] settings for this crawl. With
        `frontier` (a redis:// URL; default [crawl] frontier) the crawl is shared with the other
        processes crawling the same seeds through that Redis (see crawler/distributed.py)."""
        os.makedirs(self.data_dir, exist_ok=True)
        config = crawl_config or self.config.crawl
        if frontier is not None:
            try:
                config = dataclasses.replace(config, frontier=frontier)
            except ValueError as exc:
                from core.errors import ConfigError
                raise ConfigError(str(exc)) from None
        return run_crawl(seeds, config, self.store_path, max_pages, progress=progress)

    def index(self, progress=None, rebuild: bool = False, shards: int | None = None,
              stores: tuple[str, ...] = (), ray: str | None = None) -> IndexReport:
        """Build a new index generation from the store and switch readers to it.

        `rebuild` re-embeds everything and drops damaged older generations (see build_index).
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
        kw = {"progress": progress} if progress is not None else {}
        if shards == 1:
            report = build_index(self.store_path if len(paths) == 1 else "", self.index_root, self.config.index,
                                 self.embedder, rebuild=rebuild, embed=embed,
                                 pages=None if len(paths) == 1 else _pages_of(paths), **kw)
            remove_shard_manifest(self.index_root)
        else:
            reports = build_shards(lambda: _pages_of(paths), self.index_root, self.config.index, self.embedder,
                                   shards, embed=embed)
            report = dataclasses.replace(
                reports[0], pages=sum(r.pages for r in reports), chunks=sum(r.chunks for r in reports),
                added=sum(r.added for r in reports), removed=sum(r.removed for r in reports),
                embedded=sum(r.embedded for r in reports), elapsed_s=round(sum(r.elapsed_s for r in reports), 3),
                settings={**reports[0].settings, "shards": shards})
        with self._load_lock:
            self._index = None
            self._synth = None
        return report

    # --- queries --------------------------------------------------------------------
    def open_index(self) -> HybridIndex:
        """The current index generation, loaded and verified once, reloaded after `index()`."""
        with self._load_lock:
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

    def ray_synthesizer(self, address: str = "auto") -> Synthesizer:
        """A synthesizer answering over this sharded index's shards as Ray actors on `address`;
        `.retriever.close()` stops the actors."""
        return Synthesizer(self.ray_retriever(address), self.config.answer, self._llm_factory)

    def search(self, query: str, k: int | None = None, filters: Filters = Filters(),
               rerank: bool | None = None) -> SearchResult:
        result = self.retriever().search(query, k=k, filters=filters, rerank=rerank)
        return self._with_index_note(result)

    def _with_index_note(self, result):
        """Add the note of a fallback index (the current generation is damaged) to a result."""
        note = self._index.note if self._index is not None else ""
        if note and note not in result.notes:
            result = dataclasses.replace(result, notes=tuple(result.notes) + (note,))
        return result

    def evaluate(self, path: str, engines: tuple[str, ...] = ("bm25", "dense", "hybrid"), limit: int | None = None,
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
        index = self.open_index()
        return [evaluate_answers(lambda q, m=m: self.ask(q, m), m, qa, unanswerable, index.page_text)
                for m in modes]

    def synthesizer(self) -> Synthesizer:
        with self._load_lock:
            if self._synth is None or self._synth.retriever.index is not self.open_index():
                self._synth = Synthesizer(self.retriever(), self.config.answer, self._llm_factory)
            return self._synth

    def ask(self, question: str, mode: str | None = None) -> Answer:
        """A cited answer (or an abstention), through the LlamaIndex query engine."""
        with self._answer_lock:
            return self._with_index_note(self.synthesizer().query_engine(mode).query(question).metadata["answer"])

    def ask_stream(self, question: str, mode: str | None = None) -> Iterator[str | Answer]:
        """Text deltas as generated, then the final Answer (the same query engine, streamed).
        The generator holds the answer lock from its first step until it ends or is closed, so
        close an abandoned one."""
        with self._answer_lock:
            for part in self.synthesizer().query_engine(mode).stream_answer(question):
                yield part if isinstance(part, str) else self._with_index_note(part)

    def warm(self, modes: tuple[str, ...] | None = None) -> dict[str, float]:
        """Load the index, embedder, answer models and reranker now instead of on the first
        question (for servers); returns the seconds each model took. `modes` defaults to those
        the configured mode can use (auto: both). Holds the answer lock, so a question asked
        meanwhile waits for the models rather than loading them twice."""
        if modes is None:
            mode = self.config.answer.mode
            modes = ("fast", "slow") if mode == "auto" else (mode,)
        self.embedder.embed_query("warm up")
        with self._answer_lock:
            return self.synthesizer().warm(modes)

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

    def as_query_engine(self, mode: str = "auto"):
        """Fathom's LlamaIndex query engine: `.query(q)` returns a Response whose metadata["answer"]
        is the Answer and whose source_nodes are the cited passages. It calls the models directly,
        so use it from one thread (or through `ask`, which serializes answers)."""
        return self.synthesizer().query_engine(mode)

    def as_retriever(self, k: int = 5, rerank: bool | None = None):
        """Fathom's hybrid retriever as a LlamaIndex BaseRetriever (NodeWithScore per passage)."""
        from retriever.llamaindex_adapter import FathomRetriever
        return FathomRetriever(self.retriever(), k=k, rerank=rerank)

    def sites(self) -> list[dict]:
        """Per host: live and deleted pages and the last fetch time."""
        with CrawlStore(self.store_path, read_only=True) as store:
            return store.sites()

    def outcomes(self, limit: int = 500, host: str = "") -> list[dict]:
        """The latest fetch outcome of each URL (fetched, unchanged, skipped ... and why), newest first."""
        with CrawlStore(self.store_path, read_only=True) as store:
            return store.outcomes(limit, host)

    def status(self, verify: bool = False) -> Status:
        """What is crawled and indexed, with the index's persisted settings. The current
        generation's files are checked by size and mtime, or with `verify` by their sha256;
        damage shows as index.error (with the generation a search would fall back to)."""
        crawl = index = None
        if os.path.exists(self.store_path):
            with CrawlStore(self.store_path, read_only=True) as store:
                crawl = CrawlStatus(**store.stats())
        try:
            from indexer.shards import read_shard_manifest, shard_dir
            shards = read_shard_manifest(self.index_root) if os.path.isdir(self.index_root) else None
            if shards is not None:  # the shards' manifests, summed; settings from the first shard
                ms = [read_manifest(current_generation(shard_dir(self.index_root, i))) for i in range(shards.shards)]
                index = IndexStatus(
                    generation=max(m.generation for m in ms), pages=sum(m.pages for m in ms),
                    chunks=sum(m.chunks for m in ms), built_at=max(m.built_at for m in ms),
                    build_s=round(sum(m.build_s for m in ms), 3),
                    settings={**ms[0].settings(), "shards": shards.shards, "shard_hash": shards.hash},
                    size_bytes=_dir_size(self.index_root),
                    shards=[{"dir": d, "generation": m.generation, "pages": m.pages, "chunks": m.chunks}
                            for d, m in zip(shards.dirs, ms)])
                return Status(self.data_dir, crawl, index)
            gen = current_generation(self.index_root)
            manifest = read_manifest(gen)
            index = IndexStatus(generation=manifest.generation, pages=manifest.pages, chunks=manifest.chunks,
                                built_at=manifest.built_at, build_s=manifest.build_s, settings=manifest.settings(),
                                manifest=dataclasses.asdict(manifest) | {"files": len(manifest.files),
                                                                         "sizes": len(manifest.sizes)},
                                size_bytes=_dir_size(gen))
            verify_files(gen, manifest, full=verify)
            index = dataclasses.replace(index, verified="sha256" if verify else "size+mtime",
                                        note=_embedder_note(manifest.embedder, self.config.index.embedder))
        except IndexNotFound:
            pass
        except IndexProblem as exc:  # show what is wrong instead of failing the whole status
            try:
                fallback = HybridIndex.open(self.index_root, self.config.index.embedder, verify="full" if verify else True,
                                            threads=self.config.index.threads)
                serving = fallback.manifest.generation if fallback.note else None
            except IndexProblem:
                serving = None
            index = IndexStatus(error=str(exc), serving=serving)
        return Status(self.data_dir, crawl, index)


def evaluate_sites(sites: list[tuple[str, str]], engines: tuple[str, ...], limit: int | None = None,
                   config: Config | None = None, log=None) -> dict:
    """Score each (data dir, qrels file) pair with every engine setting, and the mean over
    sites per engine: the per-site table of `fathom eval --site ...`. Every data dir must hold
    an index built with the configured embedder."""
    import statistics

    config = config or Config()
    out: dict = {"engines": list(engines), "sites": [], "mean": {}}
    for data_dir, qrels in sites:
        name = os.path.splitext(os.path.basename(qrels))[0]
        results = Engine(data_dir, config).evaluate(qrels, engines, limit)
        if log:
            log(f"{name}: " + ", ".join(f"{r.engines} {r.ndcg_at_10:.3f}" for r in results))
        out["sites"].append({"site": name, "data": data_dir, "qrels": qrels, "queries": results[0].queries,
                             "results": {r.engines: {k: v for k, v in dataclasses.asdict(r).items()
                                                     if k != "per_query"} for r in results}})
    for e in engines:
        out["mean"][e] = {m: round(statistics.fmean(s["results"][e][m] for s in out["sites"]), 4)
                          for m in ("ndcg_at_10", "recall_at_10", "mrr_at_10", "hit_at_5")}
    return out
