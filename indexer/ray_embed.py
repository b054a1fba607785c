"""Batch embedding on Ray Data: the chunks a build has to embed (those not in the embedding
cache) go through `map_batches` to a pool of Ray actors, each loading the embedder once.
The build itself (chunking, cache, tantivy, hnswlib, manifest) stays in indexer/build.py, so a
Ray build writes the same generation as a local one.

Chunking happens on the driver: it is cheap next to embedding, and only chunks missing from the
cache travel to the cluster."""
from __future__ import annotations

import os

import numpy as np

from indexer.config import IndexConfig


def connect(address: str, num_cpus: int | None = None) -> None:
    """ray.init for `address` ("auto": a local cluster on this machine's CPUs), once per process."""
    import ray
    if ray.is_initialized():
        return
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address == "auto" or address == "local":
        ray.init(num_cpus=num_cpus or os.cpu_count(), object_store_memory=256 * 1024 * 1024, **kwargs)
    else:
        ray.init(address=address, **kwargs)


class _Embed:
    """A Ray Data actor: loads the embedder once, then embeds batches of texts."""

    def __init__(self, name: str, threads: int, batch_size: int):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from indexer.embedding import load_embedder
        self.embedder = load_embedder(name, threads)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        vecs = self.embedder.embed_documents(list(batch["text"]), self.batch_size)
        return {"i": batch["i"], "vector": np.asarray(vecs, np.float32)}


def ray_embed(address: str, config: IndexConfig, workers: int | None = None, threads_per_worker: int = 1):
    """A function (texts -> float32 array, in order) that embeds on Ray with `workers` actors
    (default: the cluster's CPUs / threads_per_worker), for build_index(embed=...)."""
    def embed(texts: list[str]) -> np.ndarray:
        import ray
        connect(address)
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads_per_worker)
        ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)],
                                 override_num_blocks=max(n * 4, 1))
        out = ds.map_batches(_Embed, fn_constructor_args=(config.embedder, threads_per_worker,
                                                          config.embed_batch_size),
                             batch_size=config.embed_batch_size * 4, compute=ray.data.ActorPoolStrategy(size=n),
                             num_cpus=threads_per_worker, batch_format="numpy")
        vectors: list = [None] * len(texts)
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            for i, v in zip(batch["i"], batch["vector"]):
                vectors[int(i)] = v
        missing = [i for i, v in enumerate(vectors) if v is None]
        if missing:
            from core.errors import FathomError
            raise FathomError(f"Ray returned no vector for {len(missing)} of {len(texts)} chunks")
        return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)
    return embed
