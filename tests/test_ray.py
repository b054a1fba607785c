"""Ray: shard actors answer like in-process shards; Ray Data embedding writes the same generation.
A local Ray cluster (2 CPUs, small object store) is started for this module and shut down after."""
import dataclasses
import os
import shutil

import numpy as np
import pytest

from fathom.engine import Engine
from indexer.build import read_chunks
from indexer.generations import current_generation
from indexer.hybrid_index import HybridIndex
from tests.test_shards import QUERIES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    import ray
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))  # for workers
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _copy_store(engine, dest, with_cache: bool) -> str:
    os.makedirs(os.path.join(dest, "index"))
    shutil.copy(engine.store_path, os.path.join(dest, "crawl.duckdb"))
    if with_cache:
        for name in os.listdir(engine.index_root):
            if name.startswith("embcache-"):
                shutil.copy(os.path.join(engine.index_root, name), os.path.join(dest, "index", name))
    return str(dest)


def test_shard_actors_return_what_in_process_shards_return(ray_cluster, built_engine, embedder, tmp_path):
    sharded = Engine(_copy_store(built_engine, tmp_path / "d", True), embedder=embedder)
    sharded.index(shards=2)
    local = sharded.retriever()
    remote = sharded.ray_retriever("auto")
    try:
        for q in QUERIES:
            for engines in ("hybrid", "bm25", "dense", "page", "naive"):
                a = local.search(q, k=5, engines=engines).hits
                b = remote.search(q, k=5, engines=engines).hits
                assert [(h.url, h.chunk_id, h.bm25_rank, h.dense_rank, h.page_rank) for h in a] == \
                       [(h.url, h.chunk_id, h.bm25_rank, h.dense_rank, h.page_rank) for h in b]
                assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-6)
        # the coordinator reranks the fused candidates of Ray shards as it does in-process ones
        unhurried = dataclasses.replace(local.config, rerank_budget_ms=600_000.0)
        local.config = remote.config = unhurried
        a, b = local.search(QUERIES[0], k=5, rerank=True).hits, remote.search(QUERIES[0], k=5, rerank=True).hits
        assert [(h.url, h.rerank_rank) for h in a] == [(h.url, h.rerank_rank) for h in b] and a[0].rerank_rank
    finally:
        remote.close()


def test_ask_answers_over_ray_shards(ray_cluster, built_engine, embedder, tmp_path):
    """The answer path over shard actors: document frequencies and chunk counts come from them."""
    from tests.test_synthesizer import TINY
    data = _copy_store(built_engine, tmp_path / "d", True)
    engine = Engine(data, dataclasses.replace(built_engine.config, answer=TINY), embedder=embedder)
    engine.index(shards=2)
    synth = engine.ray_synthesizer("auto")
    try:
        index = engine.open_index()
        assert len(synth.retriever.index) == len(index)
        assert synth.retriever.index.document_frequency("compost") == index.document_frequency("compost") > 0
        ans = synth.query_engine("slow").query("How often should the compost heap be turned?").metadata["answer"]
    finally:
        synth.retriever.close()
    assert ans.citations and any(c.url.endswith("compost.html") for c in ans.citations)
    assert not any("shards" in n for n in ans.notes)


def test_ray_data_embedding_writes_the_same_generation(ray_cluster, built_engine, embedder, tmp_path):
    local = Engine(_copy_store(built_engine, tmp_path / "local", False), embedder=embedder)
    on_ray = Engine(_copy_store(built_engine, tmp_path / "ray", False), embedder=embedder)
    a = local.index()
    b = on_ray.index(ray="auto")
    assert b.embedded == a.embedded == a.chunks > 0
    assert a.settings == b.settings
    ga, gb = current_generation(local.index_root), current_generation(on_ray.index_root)
    assert read_chunks(ga) == read_chunks(gb)
    ia, ib = HybridIndex.open(local.index_root), HybridIndex.open(on_ray.index_root)
    ids = sorted(ia.chunks)
    assert np.allclose(ia.dense.get_items(ids), ib.dense.get_items(ids), atol=2e-2)  # int8 storage
    assert on_ray.index(ray="auto").embedded == 0  # the embedding cache is reused
