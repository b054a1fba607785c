"""The bottom layer: the one exception tree, exported from fathom, library errors mapped to it
at each edge, and the verify-once checksum check."""
import hashlib
import inspect
import os

import pytest

import core.errors
import fathom
from core import verify
from core.errors import FathomError, IndexCorrupt, ModelUnavailable, QueryError, StoreError


def test_fathom_exports_the_whole_tree():
    tree = {n for n, c in inspect.getmembers(core.errors, inspect.isclass) if issubclass(c, FathomError)}
    assert tree <= set(fathom.__all__)
    assert all(getattr(fathom, n) is getattr(core.errors, n) for n in tree)


def test_verify_once_hashes_a_file_once_then_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "model.bin"
    path.write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    calls = []
    real = verify.sha256_file
    monkeypatch.setattr(verify, "sha256_file", lambda p: calls.append(p) or real(p))
    verify.forget()
    verify.verify_once(str(path), digest)
    verify.verify_once(str(path), digest)
    assert len(calls) == 1 and os.path.exists(verify.stamp_path(str(path)))
    verify.forget()  # a new process: the stamp file spares the hash
    verify.verify_once(str(path), digest)
    assert len(calls) == 1
    path.write_bytes(b"tampered" * 1000)
    with pytest.raises(ModelUnavailable, match="sha256"):
        verify.verify_once(str(path), digest, hint="reinstall it")
    with pytest.raises(IndexCorrupt, match="missing"):
        verify.verify_once(str(tmp_path / "absent"), digest, IndexCorrupt)


def test_bad_filters_are_query_errors_that_are_still_value_errors():
    from retriever.hybrid import Filters
    for kwargs in ({"since": "last tuesday"}, {"since": "2024-02-01", "until": "2024-01-01"},
                   {"date_field": "built_at"}):
        with pytest.raises(QueryError) as err:
            Filters(**kwargs)
        assert isinstance(err.value, ValueError)


def test_a_damaged_store_file_is_a_store_error(tmp_path):
    from crawler.store import CrawlStore
    path = tmp_path / "crawl.duckdb"
    path.write_bytes(b"this is not a duckdb file" * 100)
    for read_only in (True, False):
        with pytest.raises(StoreError, match="cannot open crawl store"):
            CrawlStore(str(path), read_only=read_only)


def test_a_damaged_tantivy_directory_is_index_corrupt(tmp_path):
    from indexer.lexical import LexicalIndex
    (tmp_path / "meta.json").write_text("{garbage")
    with pytest.raises(IndexCorrupt, match="--rebuild"):
        LexicalIndex(str(tmp_path))


def test_an_unloadable_llama_model_is_model_unavailable(tmp_path, monkeypatch):
    from synthesizer import llm, models
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setattr(models, "model_path", lambda name: str(bad))
    monkeypatch.setattr(llm, "model_path", lambda name: str(bad))
    with pytest.raises(ModelUnavailable, match="llama.cpp could not load"):
        llm.load_llama("smollm2-135m", 512, 1)
