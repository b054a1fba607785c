import json

import pytest

from core.errors import QueryError
from retriever.evaluation import Judged, evaluate, load_judged, score


def test_score_on_a_known_ranking():
    rel = frozenset({"a.html", "c.html"})
    m = score(["x.html", "a.html", "y.html", "c.html"], rel)
    ideal = 1 + 1 / 1.5849625007211562
    assert m["ndcg"] == pytest.approx((1 / 1.5849625007211562 + 1 / 2.321928094887362) / ideal)
    assert m["recall"] == 1.0 and m["mrr"] == 0.5 and m["hit5"] == 1.0
    assert score(["x.html"], rel) == {"ndcg": 0.0, "recall": 0.0, "mrr": 0.0, "hit5": 0.0}


def test_site_served_under_a_prefix_still_matches():
    assert score(["docs/a.html"], frozenset({"a.html"}))["mrr"] == 1.0


def test_load_judged_reads_qrels_and_qa_and_strips_anchors(tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"qid": "1", "query": "x", "relevant": ["a.html", "/b.html"]}) + "\n")
    a = tmp_path / "a.jsonl"
    a.write_text(json.dumps({"qid": "f1", "question": "why?", "answer": "...", "source": "faq/p.html#why"}) + "\n")
    assert load_judged(str(q))[0].relevant == {"a.html", "b.html"}
    assert load_judged(str(a))[0] == Judged("f1", "why?", frozenset({"faq/p.html"}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(QueryError):
        load_judged(str(bad))


def test_evaluate_averages_and_times():
    judged = [Judged("1", "q1", frozenset({"a.html"})), Judged("2", "q2", frozenset({"b.html"}))]
    ranking = {"q1": ["http://h/a.html"], "q2": ["http://h/x.html", "http://h/b.html"]}
    result = evaluate(lambda q: ranking[q], judged, "test")
    assert result.queries == 2 and result.mrr_at_10 == pytest.approx(0.75) and result.recall_at_10 == 1.0


def test_engine_evaluate_on_the_fixture_site(built_engine, tmp_path):
    qrels = tmp_path / "site.jsonl"
    rows = [{"qid": "1", "query": "turning the compost heap", "relevant": ["docs/compost.html"]},
            {"qid": "2", "query": "tomato suckers pruning", "relevant": ["docs/tomatoes.html"]},
            {"qid": "3", "query": "morning watering fungal disease", "relevant": ["docs/watering.html"]}]
    qrels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = {r.engines: r for r in built_engine.evaluate(str(qrels))}
    assert set(results) == {"bm25", "dense", "hybrid"}
    assert results["hybrid"].mrr_at_10 == 1.0 and results["bm25"].ndcg_at_10 == 1.0


def test_token_f1():
    from synthesizer.evaluation import token_f1
    assert token_f1("Turn the heap [1].", "turn the heap") == 1.0
    assert token_f1("nothing", "turn the heap") == 0.0


def test_answer_evaluation_with_tiny_model(built_engine, tmp_path):
    import dataclasses

    from fathom.engine import Engine
    from synthesizer.config import AnswerConfig

    cfg = dataclasses.replace(built_engine.config, answer=AnswerConfig(
        fast_model="smollm2-135m", slow_model="smollm2-135m", fast_max_tokens=40, slow_max_tokens=40))
    eng = Engine(built_engine.data_dir, cfg, embedder=built_engine.embedder)
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"qid": "1", "question": "How often should the compost heap be turned?",
                              "answer": "Turn the heap every two weeks.", "source": "docs/compost.html#x"}) + "\n")
    un = tmp_path / "un.jsonl"
    un.write_text(json.dumps({"qid": "u1", "question": "What port does a Redis server listen on by default?"}) + "\n")
    (fast,) = eng.evaluate_answers(str(qa), str(un), modes=("fast",))
    assert fast.answerable == 1 and fast.unanswerable == 1
    assert fast.abstention == 1.0
    assert fast.cites_source in (0.0, 1.0) and 0.0 <= fast.token_f1 <= 1.0
    # each question's row says where its time went, as the answer's timings do
    assert [r["answerable"] for r in fast.per_question] == [True, False]
    assert all(r["timings"]["total_ms"] == pytest.approx(r["seconds"] * 1000) for r in fast.per_question)


def test_page_and_naive_engines_and_per_site_table(built_engine, tmp_path):
    from fathom.engine import evaluate_sites

    qrels = tmp_path / "garden.jsonl"
    rows = [{"qid": "1", "query": "turning the compost heap", "relevant": ["docs/compost.html"]},
            {"qid": "2", "query": "tomato suckers pruning", "relevant": ["docs/tomatoes.html"]}]
    qrels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    other = tmp_path / "wrong.jsonl"  # judged against pages that do not answer: scores must drop
    other.write_text(json.dumps({"qid": "1", "query": "turning the compost heap",
                                 "relevant": ["docs/tomatoes.html"]}) + "\n")
    index = built_engine.open_index()
    assert index.pages is not None and index.pages.num_docs >= 4
    hit = built_engine.retriever().search("tomato suckers pruning", k=3).hits[0]
    assert hit.url.endswith("docs/tomatoes.html") and hit.page_rank == 1
    data = evaluate_sites([(built_engine.data_dir, str(qrels)), (built_engine.data_dir, str(other))],
                          ("page", "naive", "hybrid"), config=built_engine.config)
    good, bad = data["sites"]
    assert good["site"] == "garden" and good["queries"] == 2
    assert good["results"]["page"]["ndcg_at_10"] == 1.0 and good["results"]["naive"]["mrr_at_10"] == 1.0
    assert bad["results"]["hybrid"]["mrr_at_10"] < 1.0
    assert data["mean"]["hybrid"]["ndcg_at_10"] == round(
        (good["results"]["hybrid"]["ndcg_at_10"] + bad["results"]["hybrid"]["ndcg_at_10"]) / 2, 4)
