"""Index shards served by Ray actors: each actor opens one shard (an ordinary index root) with
its own embedder and answers `candidates` (and `search`) exactly as an in-process
HybridRetriever does; the coordinator (ShardedRetriever) asks all of them at once and fuses.
The same code serves shards on several machines of a Ray cluster when each machine can read
its shard's folder."""
from __future__ import annotations

import dataclasses
import os

from retriever.config import RetrieveConfig
from retriever.hybrid import Candidates, Filters, SearchResult
from retriever.sharded import ShardedRetriever


class ShardServer:
    """The body of a shard actor (a plain class, wrapped with ray.remote by `start_shards`)."""

    def __init__(self, root: str, embedder_name: str, retrieve: dict, threads: int = 1):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from indexer.embedding import load_embedder
        from indexer.hybrid_index import HybridIndex
        from retriever.hybrid import HybridRetriever
        index = HybridIndex.open(root, embedder_name, threads=threads)
        self.retriever = HybridRetriever(index, load_embedder(embedder_name, threads), RetrieveConfig(**retrieve))

    def search(self, query: str, k: int, max_per_page: int, engines: str, filters: dict, rerank: bool) -> SearchResult:
        return self.retriever.search(query, k=k, max_per_page=max_per_page, engines=engines,
                                     filters=Filters(**filters), rerank=rerank)

    def candidates(self, query: str, engines: str, filters: dict, k: int) -> Candidates:
        return self.retriever.candidates(query, engines, Filters(**filters), k)

    def chunks(self) -> int:
        return len(self.retriever.index.chunks)

    def document_frequency(self, stem: str) -> int:
        return self.retriever.index.document_frequency(stem)

    def page_text(self, url: str) -> str:
        return self.retriever.index.page_text(url)


def _filters_dict(filters: Filters) -> dict:
    return {f.name: getattr(filters, f.name) for f in dataclasses.fields(filters) if f.init}


class RayShardsView:
    """What the answer path reads from an index (chunk count, document frequencies, page text),
    asked of the shard actors."""

    note = ""

    def __init__(self, actors: list):
        self._actors = actors
        self._len: int | None = None

    def __len__(self) -> int:
        import ray
        if self._len is None:
            self._len = sum(ray.get([a.chunks.remote() for a in self._actors]))
        return self._len

    def document_frequency(self, stem: str) -> int:
        import ray
        return sum(ray.get([a.document_frequency.remote(stem) for a in self._actors]))

    def page_text(self, url: str) -> str:
        import ray
        return next((t for t in ray.get([a.page_text.remote(url) for a in self._actors]) if t), "")


class RayShardedRetriever(ShardedRetriever):
    """ShardedRetriever whose shards are Ray actors: all shard calls are submitted, then gathered.
    Its `index` is a RayShardsView, so a Synthesizer can answer over it."""

    def __init__(self, actors: list, config: RetrieveConfig = RetrieveConfig()):
        super().__init__(actors, config, index=RayShardsView(actors), parallel=False)

    def shard_candidates(self, query: str, engines: str, filters: Filters, k: int) -> list[Candidates]:
        import ray
        return ray.get([a.candidates.remote(query, engines, _filters_dict(filters), k) for a in self.shards])

    def close(self) -> None:
        import ray
        for a in self.shards:
            ray.kill(a)
        self.shards = []


def start_shards(index_root: str, embedder_name: str, config: RetrieveConfig, address: str = "auto",
                 cpus_per_shard: float = 0.5) -> RayShardedRetriever:
    """One Ray actor per shard of the sharded index at `index_root`, and the coordinator over them."""
    import ray

    from core.errors import IndexNotFound
    from indexer.ray_embed import connect
    from indexer.shards import read_shard_manifest
    manifest = read_shard_manifest(index_root)
    if manifest is None:
        raise IndexNotFound(f"no sharded index in {index_root}; run `fathom index --shards N`")
    connect(address)
    remote = ray.remote(num_cpus=cpus_per_shard)(ShardServer)
    retrieve = dataclasses.asdict(config)
    actors = [remote.remote(os.path.join(index_root, d), embedder_name, retrieve) for d in manifest.dirs]
    ray.get([a.chunks.remote() for a in actors])  # opened, or the error of the shard that failed
    return RayShardedRetriever(actors, config)
