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
    def crawl(self, seeds: list[str], max_pages: int | None = None) -> CrawlReport:
        """Crawl `seeds` (in a child process) into this data directory's store."""
        os.makedirs(self.data_dir, exist_ok=True)
        return run_crawl(seeds, self.config.crawl, self.store_path, max_pages)

    def index(self) -> IndexReport:
        """Build a new index generation from the store and switch readers to it."""
        if not os.path.exists(self.store_path):
            from core.errors import StoreError
            raise StoreError(f"nothing crawled yet in {self.data_dir}; run `fathom crawl URL` first")
        report = build_index(self.store_path, self.index_root, self.config.index, self.embedder)
        self._index = None
        self._synth = None
        return report

    # --- queries --------------------------------------------------------------------
    def open_index(self) -> HybridIndex:
        """The current index generation, loaded and verified once, reloaded after `index()`."""
        if self._index is None:
            if not os.path.isdir(self.index_root):
                raise IndexNotFound(f"no index in {self.data_dir}; run `fathom crawl URL` then `fathom index`")
            self._index = HybridIndex.open(self.index_root, self.config.index.embedder,
                                           threads=self.config.index.threads)
        return self._index

    def retriever(self) -> HybridRetriever:
        return HybridRetriever(self.open_index(), self.embedder, self.config.retrieve)

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
        index = self.open_index()
        return [evaluate_answers(lambda q, m=m: self.ask(q, m), m, qa, unanswerable, index.page_text)
                for m in modes]

    def synthesizer(self) -> Synthesizer:
        if self._synth is None or self._synth.retriever.index is not self.open_index():
            self._synth = Synthesizer(self.retriever(), self.config.answer, self._llm_factory)
        return self._synth

    def ask(self, question: str, mode: str | None = None) -> Answer:
        """A cited answer (or an abstention), through the LlamaIndex query engine."""
        return self.synthesizer().query_engine(mode).query(question).metadata["answer"]

    def ask_stream(self, question: str, mode: str | None = None) -> Iterator[str | Answer]:
        """Text deltas as generated, then the final Answer (the same query engine, streamed)."""
        return self.synthesizer().query_engine(mode).stream_answer(question)

    def warm(self, modes: tuple[str, ...] = ("fast", "slow")) -> dict[str, float]:
        """Load the index, embedder, answer models and reranker now instead of on the first
        question (for servers); returns the seconds each model took."""
        self.embedder.embed_query("warm up")
        return self.synthesizer().warm(modes)

    def status(self) -> dict:
        """What is crawled and indexed, with the index's persisted settings."""
        out: dict = {"data_dir": self.data_dir, "crawl": None, "index": None}
        if os.path.exists(self.store_path):
            with CrawlStore(self.store_path, read_only=True) as store:
                out["crawl"] = store.stats()
        try:
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
