"""The int8 ONNX MiniLM embedder: exported offline from the packaged model, close to torch's vectors."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

TEXTS = ["Turn the compost heap every two weeks so it breaks down evenly.",
         "CREATE INDEX builds an index on the specified column(s) of the specified relation.",
         "def prune(plant):\n    return [b for b in plant.branches if b.alive]",
         "Tomatoes",
         " ".join(["Watering in the morning keeps fungal disease away from the leaves."] * 40)]  # > 256 tokens


def test_int8_vectors_match_torch_minilm():
    from indexer.embedding import load_embedder

    embedder = load_embedder("all-MiniLM-L6-v2")  # the torch model it is exported from
    int8 = load_embedder("all-MiniLM-L6-v2-int8")
    assert (int8.dim, int8.max_tokens) == (embedder.dim, embedder.max_tokens)
    ours, ref = int8.embed_documents(TEXTS), embedder.embed_documents(TEXTS)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    cos = np.sum(ours * ref, axis=1)
    assert cos.min() > 0.97, cos
    # results come back in input order whatever the length buckets: each text is nearest its own torch vector
    assert (np.argmax(ours @ ref.T, axis=1) == np.arange(len(TEXTS))).all()
    q = int8.embed_query("how often to turn compost")
    assert int(np.argmax(ours @ q)) == 0
    assert int8.count_tokens("pg_stat_activity") == embedder.count_tokens("pg_stat_activity")
    assert int8.embed_documents([]).shape == (0, 384)


def test_token_budget_splits_batches_without_changing_order():
    from indexer.embedding import load_embedder

    int8 = load_embedder("all-MiniLM-L6-v2-int8")
    one_by_one = np.stack([int8.embed_documents([t])[0] for t in TEXTS])
    batched = int8.embed_documents(TEXTS, batch_size=2)
    # activations are quantized with one scale per batch, so neighbours move a vector a little
    assert np.sum(one_by_one * batched, axis=1).min() > 0.98


def test_export_is_made_once_atomically_and_redone_when_damaged(tmp_path, monkeypatch):
    from indexer import embedding

    monkeypatch.setenv("FATHOM_MODELS", str(tmp_path))
    path = embedding.minilm_int8_path()
    assert path.startswith(str(tmp_path)) and os.path.getsize(path) > 10_000_000
    meta = json.loads((tmp_path / "all-MiniLM-L6-v2-int8" / "export.json").read_text())
    assert meta["bytes"] == os.path.getsize(path) and len(meta["source_sha256"]) == 64
    assert [p.name for p in (tmp_path / "all-MiniLM-L6-v2-int8").iterdir() if p.name.startswith("tmp")] == []
    mtime = os.stat(path).st_mtime_ns
    assert embedding.minilm_int8_path() == path and os.stat(path).st_mtime_ns == mtime  # reused
    with open(path, "r+b") as f:
        f.truncate(1000)  # a damaged file is exported again, not loaded
    assert embedding.minilm_int8_path() == path and os.path.getsize(path) == meta["bytes"]


def test_missing_model_package_is_a_clear_error(tmp_path):
    from core.errors import ModelUnavailable
    from indexer.embedding import minilm_int8_path

    with pytest.raises(ModelUnavailable, match="weights missing"):
        minilm_int8_path(str(tmp_path))


def test_the_short_reading_int8_embedder_cuts_texts_at_160_word_pieces():
    from indexer.embedding import load_embedder

    full, short = load_embedder("all-MiniLM-L6-v2-int8"), load_embedder("all-MiniLM-L6-v2-int8-160")
    assert short.name != full.name and short.max_tokens == full.max_tokens  # same chunks, fewer pieces read
    a, b = full.embed_documents(TEXTS), short.embed_documents(TEXTS)
    cos = np.sum(a * b, axis=1)
    assert cos[:4].min() > 0.98  # short texts: the same vectors up to batch quantization
    long_text = " ".join(f"word{i} about topic{i % 17}" for i in range(200))  # ~1,000 word pieces
    head = " ".join(long_text.split()[:40])
    assert len(short.tokenizer.encode(long_text).ids) == 160 < len(full.tokenizer.encode(long_text).ids)
    assert float(short.embed_documents([long_text])[0] @ full.embed_documents([long_text])[0]) < 0.999
    assert short.embed_documents([head]).shape == (1, 384)
