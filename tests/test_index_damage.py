"""Damaged index files: opening checks sizes and mtimes instead of hashing, still catches a
truncated or zeroed tantivy segment, a truncated hnswlib file and a missing chunk table, falls
back to the previous kept generation, and `--rebuild` repairs an index with none."""
import glob
import os
import shutil

import pytest
from click.testing import CliRunner

import indexer.manifest as manifest_mod
from core.errors import IndexCorrupt
from fathom.cli import main
from fathom.engine import Engine
from indexer.build import build_index
from indexer.config import IndexConfig
from indexer.generations import current_generation, generations
from indexer.hybrid_index import HybridIndex


@pytest.fixture()
def data_copy(built_engine, tmp_path):
    """A copy of the fixture data dir (mtimes kept) whose index has two generations."""
    data = tmp_path / "data"
    shutil.copytree(built_engine.data_dir, data)
    root = os.path.join(data, "index")
    build_index(os.path.join(data, "crawl.duckdb"), root, IndexConfig(), built_engine.embedder)
    assert len(generations(root)) == 2
    return str(data)


def _engine(data, built_engine):
    return Engine(data, built_engine.config, embedder=built_engine.embedder)


def _segment(gen: str) -> str:
    """The largest file of the tantivy index (a segment's postings or store)."""
    files = [f for f in glob.glob(os.path.join(gen, "tantivy", "*")) if not os.path.basename(f).startswith(".")
             and not f.endswith(".json")]
    return max(files, key=os.path.getsize)


def _zero(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(b"\0" * size)


def _truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def test_open_hashes_nothing_on_an_untouched_index(data_copy, monkeypatch):
    calls = []
    real = manifest_mod.sha256_file
    monkeypatch.setattr(manifest_mod, "sha256_file", lambda p: calls.append(p) or real(p))
    HybridIndex.open(os.path.join(data_copy, "index"))
    assert calls == []
    HybridIndex.open(os.path.join(data_copy, "index"), verify="full")
    assert len(calls) >= 5  # --verify still hashes every file


@pytest.mark.parametrize("damage,target", [
    (_zero, "segment"), (_truncate, "segment"), (_truncate, "graph.bin"), (os.remove, "chunks.jsonl.xz")])
def test_damage_is_named_and_search_falls_back_to_the_previous_generation(data_copy, built_engine, damage, target):
    root = os.path.join(data_copy, "index")
    current = current_generation(root)
    path = _segment(current) if target == "segment" else os.path.join(current, target)
    damage(path)
    with pytest.raises(IndexCorrupt, match=os.path.basename(path)):
        HybridIndex.open(root, fallback=False)
    eng = _engine(data_copy, built_engine)
    result = eng.search("compost heap turned")
    assert result.hits and result.hits[0].url.endswith("compost.html")
    assert any("damaged" in n and "serving the previous generation" in n for n in result.notes)
    assert eng.open_index().directory != current


def test_damage_without_an_earlier_generation_says_rebuild_and_rebuild_repairs(data_copy, built_engine):
    root = os.path.join(data_copy, "index")
    for gen in generations(root):
        _zero(_segment(gen))
    eng = _engine(data_copy, built_engine)
    with pytest.raises(IndexCorrupt, match="fathom index --rebuild"):
        eng.search("compost")
    runner = CliRunner()
    out = runner.invoke(main, ["--data", data_copy, "status"])
    assert out.exit_code == 0 and "damaged" in out.output and "--rebuild" in out.output
    report = _engine(data_copy, built_engine).index(rebuild=True)
    assert report.embedded == report.chunks > 0  # nothing on disk was trusted
    assert generations(root) == [current_generation(root)]  # the damaged generations are gone
    eng = _engine(data_copy, built_engine)
    assert eng.search("compost heap turned").hits[0].url.endswith("compost.html")
    out = runner.invoke(main, ["--data", data_copy, "status", "--verify"])
    assert out.exit_code == 0, out.output


def test_status_verify_catches_a_rewrite_that_keeps_size_and_mtime(data_copy):
    root = os.path.join(data_copy, "index")
    gen = current_generation(root)
    path = os.path.join(gen, "graph.bin")
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\x01\x02\x03")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # beyond what the quick check can see
    runner = CliRunner()
    assert runner.invoke(main, ["--data", data_copy, "status"]).exit_code == 0
    out = runner.invoke(main, ["--data", data_copy, "status", "--verify"])
    assert out.exit_code == 1 and "graph.bin" in out.output and "checksum" in out.output
