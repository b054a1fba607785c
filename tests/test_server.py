"""`fathom serve`: the JSON API, SSE answers, the queue, jobs and the security checks, on a real
uvicorn server over the fixture site's real index, with SmolLM2-135M as the answer model."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
import urllib.parse

import pytest

from webserver import XSS_PAGE, XSS_TITLE, EventReader, get, post_json, running_server

TINY = dict(fast_model="smollm2-135m", slow_model="smollm2-135m", fast_max_tokens=48, slow_max_tokens=48)


@pytest.fixture(scope="module")
def tiny_engine(built_engine, embedder):
    from fathom import AnswerConfig, Engine

    config = dataclasses.replace(built_engine.config, answer=AnswerConfig(**TINY))
    return Engine(built_engine.data_dir, config=config, embedder=embedder)


@pytest.fixture(scope="module")
def base(tiny_engine):
    with running_server(tiny_engine) as url:
        yield url


def q(text: str) -> str:
    return urllib.parse.quote(text)


def test_search_api_returns_the_cli_json(base, tiny_engine):
    from fathom.cli import search_dict

    status, headers, body = get(f"{base}/api/search?q={q('prune tomato suckers')}&k=3")
    assert status == 200 and headers["content-type"].startswith("application/json")
    data = json.loads(body)
    assert data["hits"][0]["url"].endswith("/docs/tomatoes.html")
    assert len(data["hits"]) <= 3
    expected = search_dict(tiny_engine.search("prune tomato suckers", k=3))
    assert set(data) == set(expected) and set(data["hits"][0]) == set(expected["hits"][0])
    assert [h["url"] for h in data["hits"]] == [h["url"] for h in expected["hits"]]


@pytest.mark.parametrize("query", ["", "k=0&q=x", "k=abc&q=x", "k=101&q=x"])
def test_search_api_rejects_bad_parameters_with_a_message(base, query):
    status, _, body = get(f"{base}/api/search?{query}")
    assert status == 400 and json.loads(body)["error"]


def test_ask_streams_tokens_then_the_full_answer_json(base):
    events = list(EventReader(base, f"/api/ask?q={q('How do I prune tomatoes?')}&mode=fast"))
    kinds = [e for e, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "answer"
    tokens = [json.loads(d) for e, d in events if e == "token"]
    assert tokens, "no token events before the answer"
    answer = json.loads(events[-1][1])
    assert set(answer) >= {"answer", "mode", "reason", "abstained", "citations", "timings", "model", "notes",
                           "sentences"}
    assert answer["mode"] == "fast" and answer["model"] == "smollm2-135m"
    if not answer["abstained"]:
        assert answer["sentences"] and answer["citations"][0]["passage"]
        s = answer["sentences"][0]
        assert s["status"] in ("supported", "reattached", "unsupported")
        if s["span_start"] >= 0:
            cited = next(c for c in answer["citations"] if c["n"] == s["citations"][0])
            assert cited["passage"][s["span_start"]:s["span_end"]] == s["span"]


def test_ask_rejects_an_unknown_mode(base):
    status, _, body = get(f"{base}/api/ask?q=x&mode=turbo")
    assert status == 400 and "mode" in json.loads(body)["error"]


def test_second_answer_waits_its_turn_while_searches_still_answer(base, tiny_engine):
    first = EventReader(base, f"/api/ask?q={q('How deep should tomato seedlings be planted?')}&mode=fast")
    try:
        assert first.next()[0] == "start"
        assert first.next()[0] == "token"  # the first answer is generating now
        second = EventReader(base, f"/api/ask?q={q('How often should I turn compost?')}&mode=fast")
        event, data = second.next()
        assert event == "queue" and json.loads(data)["position"] == 1
        # searches are not queued behind the answer
        status, _, body = get(f"{base}/api/search?q=compost")
        assert status == 200 and json.loads(body)["hits"]
        rest_first = [e for e, _ in first]
        assert rest_first[-1] == "answer"
        rest_second = [e for e, _ in second]
        assert "start" in rest_second and rest_second[-1] == "answer"
        second.close()
    finally:
        first.close()


def test_an_abandoned_answer_frees_the_model(base, tiny_engine):
    reader = EventReader(base, f"/api/ask?q={q('Why should I water vegetables in the morning?')}&mode=fast")
    assert reader.next()[0] == "start"
    assert reader.next()[0] == "token"
    assert tiny_engine._answer_lock.locked()
    reader.close()
    # the server notices the disconnect and closes the generator, which releases the answer lock;
    # the bound here is generous for a loaded 2-core machine (benchmarks/serve.py measures the time)
    deadline = time.monotonic() + 15
    while tiny_engine._answer_lock.locked() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not tiny_engine._answer_lock.locked()
    # and the next question is served at once, not queued behind the abandoned one
    events = EventReader(base, f"/api/ask?q={q('compost')}&mode=fast")
    assert events.next()[0] == "start"
    events.close()


def test_requests_for_a_foreign_host_are_refused(base):
    status, _, body = get(f"{base}/", headers={"Host": "attacker.example:80"})
    assert status == 421 and "not served here" in json.loads(body)["error"]
    for host in ("localhost", "127.0.0.1", base.removeprefix("http://")):
        assert get(f"{base}/api/status", headers={"Host": host})[0] == 200


def test_cross_origin_posts_are_refused(base, tiny_engine):
    before = len(os.listdir(tiny_engine.data_dir))
    status, _, body = post_json(f"{base}/api/jobs", {"seeds": ["http://example.invalid/"]},
                                origin="http://attacker.example")
    assert status == 403 and "cross-origin" in json.loads(body)["error"]
    # a form post (what a foreign page can send without preflight) without Origin is refused too
    status, _, _ = get(f"{base}/api/jobs", {"content-type": "application/x-www-form-urlencoded"},
                       b"seeds=http://example.invalid/", "POST")
    assert status == 403
    assert len(os.listdir(tiny_engine.data_dir)) == before  # nothing started


def test_pages_send_a_csp_without_inline_script(base):
    for path in ("/", f"/?q={q('tomato')}", "/sources", "/eval", "/nowhere"):
        status, headers, body = get(base + path)
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'self'" in csp
        scripts = re.findall(r"<script\b[^>]*>", body)
        assert scripts and all('src="/static/' in s for s in scripts), scripts
        assert not re.search(r"\son[a-z]+=", body), "inline event handler in page"
        assert not re.search(r'\ssrc="(?!/static/)', body), "something loaded from elsewhere"
        assert all('href="/static/' in link for link in re.findall(r"<link\b[^>]*>", body))


def test_search_page_shows_results_with_highlighted_snippets(base):
    status, _, body = get(f"{base}/?q={q('compost heap')}&mode=fast")
    assert status == 200
    assert "Making Compost" in body and "<mark>compost</mark>" in body.lower()
    assert 'data-mode="fast"' in body


def test_status_api_and_openapi(base):
    status, _, body = get(f"{base}/api/status")
    st = json.loads(body)
    assert status == 200 and st["index"]["chunks"] > 0 and st["crawl"]["pages"] >= 4
    assert st["index"]["settings"]["embedder"] and st["sites"]
    spec = json.loads(get(f"{base}/openapi.json")[2])
    assert {"/api/search", "/api/ask", "/api/status", "/api/jobs", "/api/jobs/{job_id}"} <= set(spec["paths"])


def test_sources_page_shows_per_url_outcomes_and_index_settings(base):
    status, _, body = get(f"{base}/sources")
    assert status == 200
    assert "card error" not in body, re.findall(r"card error.*", body)
    assert "tomatoes.html" in body and "not_html" in body  # seeds.bin: skipped, with why
    assert "hnsw_m" in body and "ef_search" in body and "compression_level" in body
    assert "on disk" in body


def test_empty_data_dir_says_which_command_to_run(tmp_path, embedder):
    from fathom import Engine

    with running_server(Engine(str(tmp_path / "empty"), embedder=embedder)) as url:
        status, _, body = get(f"{url}/?q=anything")
        assert status == 503 and "fathom crawl" in body and "fathom index" in body
        status, _, body = get(f"{url}/sources")
        assert status == 200 and "Nothing crawled yet" in body
        status, _, body = get(f"{url}/api/search?q=x")
        assert status == 503 and "fathom crawl" in json.loads(body)["error"]


def test_job_crawls_and_indexes_with_progress_and_escapes_a_hostile_title(tmp_path, embedder):
    from fathom import Engine

    site = tmp_path / "site"
    site.mkdir()
    (site / "beets.html").write_text(XSS_PAGE)
    engine = Engine(str(tmp_path / "data"), embedder=embedder)
    with running_server(engine) as url:
        status, _, body = post_json(f"{url}/api/jobs", {"seeds": [str(site)], "max_pages": 5},
                                    origin=url)
        assert status == 202
        job = json.loads(body)
        events = list(EventReader(url, job["progress"]))
        stages = [json.loads(d)["stage"] for e, d in events if e == "progress"]
        assert "crawl" in stages and "index" in stages
        finished = json.loads(events[-1][1])
        assert events[-1][0] == "finished" and finished["exit_code"] == 0, finished
        assert finished["report"]["index"]["pages"] == 1

        status, _, page = get(f"{url}/?q=beetroot")
        assert status == 200
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert XSS_TITLE not in page and "onerror" not in page
        hits = json.loads(get(f"{url}/api/search?q=beetroot")[2])["hits"]
        assert hits[0]["title"] == XSS_TITLE  # the API gives the data as it is; the page escapes it


@pytest.mark.parametrize("body", [{}, {"seeds": []}, {"seeds": [""]}, {"seeds": ["x"], "max_pages": 0},
                                  {"seeds": ["x"], "max_pages": "many"}, {"seeds": ["x"], "depth": 3}, [1]])
def test_jobs_api_rejects_bad_bodies(base, body):
    status, _, text = post_json(f"{base}/api/jobs", body, origin=base)
    assert status == 400 and json.loads(text)["error"]


def test_unknown_job_is_404(base):
    assert get(f"{base}/api/jobs/nope")[0] == 404


def test_search_keeps_working_from_threads_while_an_answer_holds_the_lock(tiny_engine):
    gen = tiny_engine.ask_stream("How do I prune tomatoes?", "fast")
    first = next(gen)  # the generator now holds the answer lock
    assert isinstance(first, str) and tiny_engine._answer_lock.locked()
    results = []
    threads = [threading.Thread(target=lambda: results.append(tiny_engine.search("compost", k=2)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 3 and all(r.hits for r in results)
    gen.close()
    assert not tiny_engine._answer_lock.locked()


def test_eval_page_scores_a_qrels_file_and_draws_the_chart(base, tmp_path):
    qrels = tmp_path / "qrels.jsonl"
    qrels.write_text("\n".join(json.dumps(r) for r in [
        {"qid": "1", "query": "prune tomato suckers", "relevant": ["docs/tomatoes.html"]},
        {"qid": "2", "query": "compost heap nitrogen carbon", "relevant": ["docs/compost.html"]},
        {"qid": "3", "query": "water in the morning", "relevant": ["docs/watering.html"]}]))
    form = urllib.parse.urlencode({"file": str(qrels), "engines": ["bm25", "hybrid"], "limit": "3"}, doseq=True)
    status, _, body = get(f"{base}/eval", {"content-type": "application/x-www-form-urlencoded", "origin": base},
                          form.encode(), "POST")
    assert status == 200, body
    assert body.count("<svg") == 2 and "nDCG@10" in body and "Recall@10" in body
    assert re.search(r"<td>hybrid</td><td class=\"num\">1\.000</td>", body)
    # a missing file is a clear error, and a foreign page cannot post the form
    status, _, body = get(f"{base}/eval", {"content-type": "application/x-www-form-urlencoded", "origin": base},
                          b"file=/nope.jsonl&engines=bm25", "POST")
    assert status == 400 and "no such file" in body
    status, _, _ = get(f"{base}/eval", {"content-type": "application/x-www-form-urlencoded",
                                        "origin": "http://attacker.example"}, form.encode(), "POST")
    assert status == 403


def test_serve_loads_the_answer_models_up_front(built_engine, embedder):
    """`fathom serve` (warm_models) loads the models before the first question; auto warms both."""
    from fathom import AnswerConfig, Engine

    config = dataclasses.replace(built_engine.config, answer=AnswerConfig(**TINY, slow_rerank=False))
    engine = Engine(built_engine.data_dir, config, embedder=embedder)
    with running_server(engine, warm_models=True) as url:
        deadline = time.monotonic() + 60
        while len(engine.synthesizer()._llms) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(engine.synthesizer()._llms) == 2  # fast and slow (the tiny model at both context sizes)
        assert get(url + "/api/status")[0] == 200
