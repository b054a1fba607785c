"""Sharded indexes (stable URL hash, one generation per shard), fan-out search fused as one index
fuses (chunk BM25, dense and page BM25 lists merged over the shards), and rerank at the coordinator."""
import json
import os
import shutil

import pytest

from fathom.engine import Engine
from indexer.build import read_chunks
from indexer.generations import current_generation
from indexer.shards import HASH_NAME, read_shard_manifest, shard_dir, shard_of
from retriever.sharded import ShardedRetriever

QUERIES = ["how deep to plant tomato seedlings", "compost heap nitrogen", "water in the morning",
           "pruning suckers", "fungal disease"]


@pytest.fixture()
def engines(built_engine, embedder, tmp_path):
    """(single-index engine, engine over a copy of its store sharded into 3)."""
    data = tmp_path / "data"
    os.makedirs(data / "index")
    shutil.copy(built_engine.store_path, data / "crawl.duckdb")
    for name in os.listdir(built_engine.index_root):  # the embedding cache: sharding embeds nothing new
        if name.startswith("embcache-"):
            shutil.copy(os.path.join(built_engine.index_root, name), data / "index" / name)
    sharded = Engine(str(data), embedder=embedder)
    report = sharded.index(shards=3)
    assert report.embedded == 0 and report.settings["shards"] == 3
    return built_engine, sharded


def test_shard_of_is_a_stable_hash_of_the_url():
    assert shard_of("https://example.org/docs/a.html", 1_000_003) == 936_007  # fixed forever: shards built elsewhere must agree
    counts = [0] * 4
    for i in range(4000):
        counts[shard_of(f"https://example.org/p{i}.html", 4)] += 1
    assert all(900 < c < 1100 for c in counts)


def test_each_page_is_in_exactly_one_shard_with_its_own_lock(engines):
    single, sharded = engines
    manifest = read_shard_manifest(sharded.index_root)
    assert manifest.shards == 3 and manifest.hash == HASH_NAME
    on_disk = json.load(open(os.path.join(sharded.index_root, "shards.json")))
    assert on_disk["dirs"] == ["shard-000", "shard-001", "shard-002"]
    seen: dict[str, int] = {}
    for i in range(3):
        root = shard_dir(sharded.index_root, i)
        assert os.path.exists(os.path.join(root, "LOCK"))
        for c in read_chunks(current_generation(root)):
            assert shard_of(c.url, 3) == i
            assert seen.setdefault(c.url, i) == i
    single_urls = {c.url for c in read_chunks(current_generation(single.index_root))}
    assert set(seen) == single_urls


def test_fan_out_dense_search_equals_the_single_index(engines):
    single, sharded = engines
    retriever = sharded.retriever()
    assert isinstance(retriever, ShardedRetriever)
    for q in QUERIES:
        a = single.retriever().search(q, k=10, engines="dense").hits
        b = retriever.search(q, k=10, engines="dense").hits
        assert [h.url for h in a] == [h.url for h in b]
        # int8 vectors (compression level 4) are scaled per shard: cosines agree to ~1e-3
        assert all(abs(x.dense_score - y.dense_score) < 2e-3 for x, y in zip(a, b))


def test_fan_out_hybrid_search_finds_the_same_best_page(engines):
    single, sharded = engines
    for q in QUERIES:
        a = single.search(q, k=3).hits
        b = sharded.search(q, k=3).hits
        assert b and a[0].url == b[0].url
        assert b[0].snippet and b[0].bm25_rank and b[0].dense_rank
        assert b[0].page_rank  # the page-level BM25 list is fused across shards too


def test_one_shard_fan_out_equals_the_single_index_exactly(built_engine):
    """The coordinator's merge and fusion are the single index's: over one shard holding every
    page, every engine and page cap gives the same hits, field for field."""
    from retriever.hybrid import ENGINES
    single = built_engine.retriever()
    fan_out = ShardedRetriever([single], single.config, parallel=False)
    for q in QUERIES + ["", "x" * 3000]:
        for engines in ENGINES:
            for per_page in (1, 3):
                a = single.search(q, k=8, max_per_page=per_page, engines=engines)
                b = fan_out.search(q, k=8, max_per_page=per_page, engines=engines)
                assert a.hits == b.hits and a.notes == b.notes, (q, engines, per_page)
    assert any(h.page_rank for h in fan_out.search(QUERIES[0], k=8).hits)


def _unhurried(engine, **kw):
    """The engine's retriever config with a rerank budget no test run can exhaust."""
    import dataclasses
    return dataclasses.replace(engine.config.retrieve, rerank_budget_ms=600_000.0, **kw)


def test_rerank_over_shards_orders_hits_as_the_single_index(engines):
    from retriever.hybrid import HybridRetriever
    single, sharded = engines
    cfg = _unhurried(single, rerank_candidates=10)
    one = HybridRetriever(single.open_index(), single.embedder, cfg)
    fan_out = sharded.retriever()
    fan_out.config = cfg
    for q in QUERIES[:3]:
        hits = one.search(q, k=10).hits
        a, notes_a = one.rerank(q, hits)
        b, notes_b = fan_out.rerank(q, hits)
        assert a == b and notes_a == notes_b == ()
        assert len(b) > 1 and all(h.rerank_rank for h in b)  # the cross-encoder ranked every hit
    # and searching with rerank reorders the fused candidates at the coordinator, with no note
    result = fan_out.search(QUERIES[0], k=5, rerank=True)
    assert result.hits and all(h.rerank_rank for h in result.hits) and "rerank_ms" in result.timings_ms
    assert not any("shards" in n for n in result.notes)
    # over one shard, a reranked search equals the single index's reranked search
    whole = ShardedRetriever([one], cfg, parallel=False)
    for q in QUERIES[:2]:
        assert whole.search(q, k=5, rerank=True).hits == one.search(q, k=5, rerank=True).hits


def test_reindex_keeps_the_shard_count_and_one_goes_back_to_a_single_index(engines):
    _, sharded = engines
    assert sharded.index().settings["shards"] == 3
    assert read_shard_manifest(sharded.index_root).shards == 3
    report = sharded.index(shards=1)
    assert "shards" not in report.settings and read_shard_manifest(sharded.index_root) is None
    assert not isinstance(sharded.retriever(), ShardedRetriever)
    assert sharded.search("compost heap nitrogen", k=1).hits


def test_filters_apply_in_every_shard(engines):
    from retriever.hybrid import Filters
    _, sharded = engines
    hits = sharded.search("tomato", k=10, filters=Filters(url_prefix="http://nowhere.invalid/")).hits
    assert hits == []


def test_status_describes_the_shards(engines):
    _, sharded = engines
    st = sharded.status().to_dict()["index"]
    assert st["settings"]["shards"] == 3 and len(st["shards"]) == 3
    assert st["pages"] == sum(s["pages"] for s in st["shards"]) > 0


def test_pages_of_several_stores_are_indexed_once(built_engine, embedder, tmp_path):
    """`fathom index --store OTHER`: a URL in two stores (here: a copy) is indexed once."""
    data = tmp_path / "data"
    os.makedirs(data / "index")
    shutil.copy(built_engine.store_path, data / "crawl.duckdb")
    other = tmp_path / "other.duckdb"
    shutil.copy(built_engine.store_path, other)
    for name in os.listdir(built_engine.index_root):
        if name.startswith("embcache-"):
            shutil.copy(os.path.join(built_engine.index_root, name), data / "index" / name)
    engine = Engine(str(data), embedder=embedder)
    single = built_engine.status().to_dict()["index"]
    report = engine.index(stores=(str(other),))
    assert report.pages == single["pages"] and report.chunks == single["chunks"] and report.embedded == 0
    with pytest.raises(Exception, match="crawl store not found"):
        engine.index(stores=(str(tmp_path / "missing.duckdb"),))


def test_ask_answers_over_shards_with_citations(engines):
    """The synthesizer runs on the fan-out retriever (SmolLM2-135M, as in test_synthesizer)."""
    import dataclasses
    from tests.test_synthesizer import TINY
    _, sharded = engines
    engine = Engine(sharded.data_dir, dataclasses.replace(sharded.config, answer=TINY), embedder=sharded.embedder)
    ans = engine.ask("How often should the compost heap be turned?", mode="fast")
    assert ans.citations
    assert all(c.url.startswith("http://") for c in ans.citations)
    assert any(c.url.endswith("compost.html") for c in ans.citations)
    slow = engine.ask("How often should the compost heap be turned?", mode="slow")  # reranks across shards
    assert slow.citations and not any("shards" in n for n in slow.notes)
