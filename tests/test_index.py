import json
import os
import shutil

import pytest
import tantivy

from core.errors import IndexCorrupt, IndexLocked, IndexMismatch, IndexNotFound
from indexer.build import build_index
from indexer.config import IndexConfig
from indexer.generations import WriterLock, current_generation
from indexer.hybrid_index import HybridIndex
import numpy as np

from indexer.vectors import LEVELS, build_hnsw, load_hnsw, save_hnsw


@pytest.fixture()
def index_copy(built_engine, tmp_path):
    root = tmp_path / "index"
    shutil.copytree(built_engine.index_root, root)
    return str(root)


def test_manifest_round_trip_restores_settings(built_engine, embedder, tmp_path):
    cfg = IndexConfig(hnsw_m=12, ef_construction=150, ef_search=77, compression_level=2, chunk_unit="tokens",
                      chunk_tokens=120, overlap_tokens=20, min_tokens=30)
    root = str(tmp_path / "idx")
    build_index(built_engine.store_path, root, cfg, embedder)
    idx = HybridIndex.open(root, embedder.name)
    m = idx.manifest
    assert (m.hnsw_m, m.ef_construction, m.ef_search, m.compression_level) == (12, 150, 77, 2)
    assert (m.chunk_unit, m.chunk_tokens, m.overlap_tokens, m.min_tokens, m.chunk_hard_limit) == ("tokens", 120, 20, 30, 224)
    assert m.settings()["chunk_unit"] == "tokens" and m.settings()["ef_search"] == 77
    assert idx.dense.ef == 77  # hnswlib forgets ef on load; we restore it
    assert m.embedder == embedder.name == IndexConfig().embedder and m.embedder_dim == 384 and len(m.embedder_checksum) == 64
    assert m.chunks == len(idx.chunks) == idx.lexical.num_docs == idx.dense.get_current_count()


@pytest.mark.parametrize("level", LEVELS)
def test_each_compression_level_loads_and_finds_the_page(built_engine, embedder, tmp_path, level):
    root = str(tmp_path / f"idx{level}")
    build_index(built_engine.store_path, root, IndexConfig(compression_level=level), embedder)
    idx = HybridIndex.open(root)
    labels, _ = idx.dense.knn_query(embedder.embed_query("remove tomato suckers to get larger fruit"), k=1)
    assert idx.chunks[int(labels[0][0])].url.endswith("tomatoes.html")


def test_level_4_stores_under_40_percent_of_level_0(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((500, 384)).astype(np.float32)
    index = build_hnsw(vecs, np.arange(500), m=16, ef_construction=100)
    sizes = {}
    for level in (0, 4):
        d = tmp_path / str(level)
        d.mkdir()
        save_hnsw(index, str(d), level)
        sizes[level] = sum(f.stat().st_size for f in d.iterdir())
        loaded = load_hnsw(str(d), 384, level, ef_search=50)
        labels, _ = loaded.knn_query(vecs[:20], k=1)
        assert (labels[:, 0] == np.arange(20)).mean() >= 0.95
    assert sizes[4] < 0.4 * sizes[0]


def test_corrupt_manifest_raises_index_corrupt(index_copy):
    gen = current_generation(index_copy)
    with open(os.path.join(gen, "manifest.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(IndexCorrupt, match="manifest"):
        HybridIndex.open(index_copy)


def test_damaged_file_raises_index_corrupt_naming_it(index_copy):
    gen = current_generation(index_copy)
    with open(os.path.join(gen, "chunks.jsonl.xz"), "r+b") as f:
        f.seek(10)
        f.write(b"garbage")
    with pytest.raises(IndexCorrupt, match="chunks.jsonl.xz"):
        HybridIndex.open(index_copy)


def test_missing_file_raises_index_corrupt(index_copy):
    gen = current_generation(index_copy)
    os.remove(os.path.join(gen, "vectors.npy.xz"))
    with pytest.raises(IndexCorrupt, match="vectors.npy.xz"):
        HybridIndex.open(index_copy)


def test_other_embedder_or_dimension_raises_mismatch(index_copy):
    with pytest.raises(IndexMismatch, match="--rebuild"):
        HybridIndex.open(index_copy, embedder_name="bge-small-en-int8")
    with pytest.raises(IndexMismatch):
        HybridIndex.open(index_copy, embedder_dim=768)


def test_an_index_built_reading_256_pieces_serves_the_160_piece_default(built_engine, tmp_path):
    """Both int8 MiniLM embedders share one vector space: an index built with the former default
    keeps loading and answering under the new one, status says the next build re-embeds, and the
    next `fathom index` builds with the configured embedder."""
    from fathom.config import Config
    from fathom.engine import Engine
    from indexer.embedding import load_embedder, vector_space

    old, new = load_embedder("all-MiniLM-L6-v2-int8"), load_embedder(IndexConfig().embedder)
    assert new.name == "all-MiniLM-L6-v2-int8-160" and vector_space(old.name) == vector_space(new.name)
    assert vector_space("all-MiniLM-L6-v2") != vector_space(new.name)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(built_engine.store_path, data / os.path.basename(built_engine.store_path))
    engine = Engine(str(data), Config(), embedder=old)
    engine.index()
    assert read_manifest_embedder(engine.index_root) == old.name
    served = Engine(str(data), Config())  # the configured default embedder
    hits = served.search("remove tomato suckers to get larger fruit", k=3).hits
    assert hits and hits[0].url.endswith("tomatoes.html")
    note = served.status().index.note
    assert old.name in note and "re-embeds" in note
    with pytest.raises(IndexMismatch, match="--rebuild"):  # another space still needs a rebuild
        HybridIndex.open(engine.index_root, embedder_name="all-MiniLM-L6-v2")
    served.close()
    served = Engine(str(data), Config())
    served.index()
    assert read_manifest_embedder(served.index_root) == new.name
    assert served.status().index.note == ""


def read_manifest_embedder(root):
    from indexer.manifest import read_manifest
    return read_manifest(current_generation(root)).embedder


def test_second_writer_is_refused(index_copy, built_engine, embedder):
    with WriterLock(index_copy):
        with pytest.raises(IndexLocked):
            build_index(built_engine.store_path, index_copy, IndexConfig(), embedder)
    # the first generation is untouched and still answers
    assert HybridIndex.open(index_copy).lexical.search("compost", 3)


def test_no_index_is_index_not_found(tmp_path):
    os.makedirs(tmp_path / "empty")
    with pytest.raises(IndexNotFound):
        HybridIndex.open(str(tmp_path / "empty"))


def test_rebuild_reuses_cached_embeddings_and_switches_generation(index_copy, built_engine, embedder):
    before = current_generation(index_copy)
    report = build_index(built_engine.store_path, index_copy, IndexConfig(), embedder)
    assert report.embedded == 0 and report.added == 0 and report.removed == 0
    assert current_generation(index_copy) != before
    manifest = json.load(open(os.path.join(current_generation(index_copy), "manifest.json")))
    assert manifest["generation"] == report.generation


def _ids_in_step(idx: HybridIndex) -> list[int]:
    """Chunk ids of the chunk table, asserting tantivy and hnswlib hold exactly the same ones."""
    ids = sorted(idx.chunks)
    assert sorted(int(x) for x in idx.dense.get_ids_list()) == ids
    found = idx.lexical.searcher.search(tantivy.Query.all_query(), len(ids) + 10).hits
    assert sorted(int(idx.lexical.searcher.doc(a)["chunk_id"][0]) for _, a in found) == ids
    assert idx.manifest.chunks == len(ids) == idx.lexical.num_docs == idx.dense.get_current_count()
    return ids


def test_incremental_add_change_delete_keeps_engines_in_step(built_engine, embedder, tmp_path):
    import duckdb

    store = str(tmp_path / "crawl.duckdb")
    shutil.copy(built_engine.store_path, store)
    root = str(tmp_path / "index")
    shutil.copytree(built_engine.index_root, root)
    before = HybridIndex.open(root)
    _ids_in_step(before)
    urls = sorted({c.url for c in before.chunks.values()})
    compost = next(u for u in urls if u.endswith("compost.html"))
    watering = next(u for u in urls if u.endswith("watering.html"))
    db = duckdb.connect(store)
    db.execute("UPDATE pages SET deleted = true WHERE url = ?", [compost])  # tombstone
    db.execute("UPDATE pages SET text = text || '\n\nMulch keeps the soil moist between waterings.', "
               "content_hash = 'changed' WHERE url = ?", [watering])
    db.execute("INSERT INTO pages (url, title, text, lang, content_hash, deleted) SELECT "
               "replace(url, 'watering.html', 'bees.html'), 'Bees', '# Bees\n\nBees pollinate squash "
               "flowers early in the morning.', lang, 'bees', false FROM pages WHERE url = ?", [watering])
    db.close()
    report = build_index(store, root, IndexConfig(), embedder)
    after = HybridIndex.open(root)
    _ids_in_step(after)
    new_urls = {c.url for c in after.chunks.values()}
    assert compost not in new_urls and watering in new_urls and any(u.endswith("bees.html") for u in new_urls)
    assert report.embedded == 2  # the changed watering chunk and the new page; the rest from the cache
    lex = after.lexical.search("compost heap nitrogen carbon", 10)  # the tombstoned page is gone from both
    assert all(after.chunks[c].url != compost for c, _ in lex)
    labels, _ = after.dense.knn_query(embedder.embed_query("compost heap nitrogen carbon"), k=after.manifest.chunks)
    assert all(after.chunks[int(l)].url != compost for l in labels[0])
    hits = after.lexical.search("mulch moist", 3)
    assert hits and after.chunks[hits[0][0]].url == watering
    labels, _ = after.dense.knn_query(embedder.embed_query("bees pollinate squash flowers"), k=1)
    assert after.chunks[int(labels[0][0])].url.endswith("bees.html")


def test_old_schema_index_asks_for_rebuild(index_copy):
    gen = current_generation(index_copy)
    path = os.path.join(gen, "manifest.json")
    data = json.load(open(path))
    data["tantivy_schema_version"] = 1
    json.dump(data, open(path, "w"))
    with pytest.raises(IndexMismatch, match="--rebuild"):
        HybridIndex.open(index_copy, verify=False)
