import pytest
from core.errors import QueryError
from llama_index.core.schema import QueryBundle

from retriever.fusion import reciprocal_rank_fusion, weighted_score_fusion
from retriever.config import RetrieveConfig
from retriever.hybrid import fuse_lists, make_snippet, with_support
from retriever.llamaindex_adapter import FathomRetriever


def test_rrf_math_on_hand_made_rankings():
    scores = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[2] == pytest.approx(1 / 62)
    assert max(scores, key=scores.get) == 1


def test_rrf_weights_scale_each_engine():
    scores = reciprocal_rank_fusion([[1], [2]], k=0, weights=[1.0, 2.0])
    assert scores == {1: 1.0, 2: 2.0}


def test_page_support_lifts_a_page_whose_second_chunk_also_matches():
    url = {1: "a", 2: "b", 3: "b", 4: "c"}.get
    fused = {1: 0.030, 2: 0.029, 3: 0.020, 4: 0.010}
    out = with_support(fused, 0.1, url)
    assert out[2] == pytest.approx(0.029 + 0.1 * 0.020)  # b's best chunk gains a tenth of its second
    assert out[1] == 0.030 and out[3] == 0.020 and out[4] == 0.010  # lone and second chunks unchanged
    assert max(out, key=out.get) == 2
    assert with_support(fused, 0.0, url) == fused
    # in hybrid fusion, before the page-level BM25 list is added; off for the single-engine settings
    cfg = RetrieveConfig(page_weight=0.0)
    lex, dense = [(1, 9.0), (2, 8.0), (3, 7.0)], [(2, 0.9), (1, 0.8), (3, 0.7)]
    with_it = fuse_lists("hybrid", cfg, lex, dense, {}, url, lambda u: None)
    without = fuse_lists("hybrid", RetrieveConfig(page_weight=0.0, page_support=0.0), lex, dense, {}, url, lambda u: None)
    assert with_it[2] > without[2] and with_it[1] == without[1]
    with pytest.raises(ValueError, match="page_support"):
        RetrieveConfig(page_support=1.5)


def test_search_finds_the_right_page(built_engine):
    hits = built_engine.search("how often should I turn the compost heap", k=3).hits
    assert hits[0].url.endswith("compost.html")
    assert hits[0].bm25_rank is not None and hits[0].dense_rank is not None
    assert "compost" in hits[0].snippet.lower()


def test_search_collapses_chunks_of_one_page(built_engine):
    hits = built_engine.search("tomato plants", k=10).hits
    urls = [h.url for h in hits]
    assert len(urls) == len(set(urls))


@pytest.mark.parametrize("query", ["", "   ", "x" * 10_000, '" : ( ) * ~ ^', "'; DROP TABLE pages; --",
                                   "помидоры", "トマト", "🍅🌱", "title:foo AND -bar"])
def test_bad_queries_never_crash(built_engine, query):
    result = built_engine.search(query, k=5)
    assert isinstance(result.hits, list)
    if len(query) > 2000:
        assert any("truncated" in n for n in result.notes)


def test_llamaindex_adapter_keeps_native_order(built_engine):
    native = built_engine.retriever().search("watering in the morning", k=4, max_per_page=2).hits
    nodes = FathomRetriever(built_engine.retriever(), k=4, max_per_page=2).retrieve(QueryBundle("watering in the morning"))
    assert [n.node.metadata["chunk_id"] for n in nodes] == [h.chunk_id for h in native]
    assert [n.score for n in nodes] == [h.score for h in native]


def test_snippet_window_holds_query_terms():
    text = "filler " * 100 + "the magic pruning word appears here " + "tail " * 100
    snip = make_snippet(text, {"pruning"}, width=80)
    assert "pruning" in snip and len(snip) <= 90


def test_weighted_score_fusion_normalises_each_engine():
    scores = weighted_score_fusion([[(1, 10.0), (2, 5.0), (3, 0.0)], [(3, 0.9), (1, 0.1)]], [1.0, 1.0])
    assert scores == pytest.approx({1: 1.0, 2: 0.5, 3: 1.0})


def test_filters_apply_inside_both_engines(built_engine):
    from retriever.hybrid import Filters

    # compost.html is the best match for this query, yet the filter must keep it out of every engine
    base = built_engine.search("compost heap turning", k=5).hits[0].url.rsplit("/", 1)[0]
    only = Filters(url_prefix=base + "/tomatoes")
    for engines in ("dense", "hybrid"):
        hits = built_engine.retriever().search("compost heap turning", k=5, engines=engines, filters=only).hits
        assert hits and all(h.url.endswith("tomatoes.html") for h in hits)
    # "roots" is on both tomatoes.html and watering.html; the filter picks inside tantivy
    hits = built_engine.retriever().search("roots grow", k=5, engines="bm25", filters=only).hits
    assert hits and all(h.url.endswith("tomatoes.html") for h in hits)
    assert built_engine.search("compost", filters=Filters(hosts=("other.example",))).hits == []


@pytest.fixture(scope="module")
def dated_engine(built_engine, tmp_path_factory):
    """The fixture site re-indexed after giving compost.html an old change date, no modified
    date and German as its language."""
    import shutil

    import duckdb

    from fathom.engine import Engine

    data = tmp_path_factory.mktemp("dated")
    shutil.copy(built_engine.store_path, data / "crawl.duckdb")
    db = duckdb.connect(str(data / "crawl.duckdb"))
    db.execute("ALTER TABLE pages ADD COLUMN IF NOT EXISTS modified_at VARCHAR")  # the page's own date
    db.execute("UPDATE pages SET modified_at = '2025-05-05'")
    db.execute("UPDATE pages SET last_changed = TIMESTAMP '2020-03-04 05:06:07', lang = 'de-DE', "
               "modified_at = NULL WHERE url LIKE '%/compost.html'")
    db.execute("UPDATE pages SET last_changed = TIMESTAMP '2025-06-01 12:00:00', lang = 'en-GB' "
               "WHERE url NOT LIKE '%/compost.html'")
    db.close()
    engine = Engine(str(data), embedder=built_engine.embedder)
    engine.index()
    return engine


COMPOST = "compost heap nitrogen carbon"  # compost.html is by far the best match in every engine


@pytest.mark.parametrize("engines", ["bm25", "dense", "hybrid"])
def test_date_filter_keeps_best_match_out_of_every_engine(dated_engine, engines):
    from retriever.hybrid import Filters

    r = dated_engine.retriever()
    assert r.search(COMPOST, k=3, engines=engines).hits[0].url.endswith("compost.html")
    for f in (Filters(since="2021-01-01"), Filters(until="2020-03-03"),
              Filters(since="2020-03-04T05:06:08"), Filters(since="2020-01-01", date_field="modified_at")):  # no date: never passes
        hits = r.search(COMPOST, k=10, engines=engines, filters=f).hits
        assert not any(h.url.endswith("compost.html") for h in hits), f
    # a date-only `until` includes its whole day; only compost.html changed that early
    hits = r.search(COMPOST, k=10, engines=engines, filters=Filters(until="2020-03-04")).hits
    assert hits and all(h.url.endswith("compost.html") for h in hits)
    hits = r.search("water roots", k=10, engines=engines, filters=Filters(since="2025-06-01", until="2025-06-01")).hits
    assert hits and not any(h.url.endswith("compost.html") for h in hits)


@pytest.mark.parametrize("engines", ["bm25", "dense", "hybrid"])
def test_language_filter_keeps_best_match_out_of_every_engine(dated_engine, engines):
    from retriever.hybrid import Filters

    r = dated_engine.retriever()
    hits = r.search(COMPOST, k=10, engines=engines, filters=Filters(langs=("en",))).hits
    assert hits and not any(h.url.endswith("compost.html") for h in hits)
    hits = r.search(COMPOST, k=10, engines=engines, filters=Filters(langs=("DE",))).hits
    assert hits and all(h.url.endswith("compost.html") for h in hits)


def test_bad_date_filter_is_a_clear_error():
    from retriever.hybrid import Filters

    with pytest.raises(QueryError, match="ISO date"):
        Filters(since="last tuesday")
    with pytest.raises(QueryError, match="empty date range"):
        Filters(since="2024-02-01", until="2024-01-01")
    with pytest.raises(QueryError, match="date_field"):
        Filters(since="2024-02-01", date_field="built_at")


def test_search_cli_date_and_language_options(dated_engine):
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "fathom", "--data", dated_engine.data_dir, "search", COMPOST,
                          "--since", "2021-01-01", "--lang", "en", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    urls = [h["url"] for h in json.loads(out.stdout)["hits"]]
    assert urls and not any(u.endswith("compost.html") for u in urls)
    out = subprocess.run([sys.executable, "-m", "fathom", "--data", dated_engine.data_dir, "search", COMPOST,
                          "--since", "not-a-date"], capture_output=True, text=True)
    assert out.returncode == 2 and "ISO date" in out.stderr


def test_index_without_page_level_bm25_still_searches_and_says_so(built_engine):
    from retriever.hybrid import HybridRetriever

    index = built_engine.open_index()
    pages, index.pages = index.pages, None
    try:
        result = HybridRetriever(index, built_engine.embedder).search("compost heap", k=3)
        assert result.hits and result.hits[0].page_rank is None
        assert any("page-level BM25" in n and "--rebuild" in n for n in result.notes)
    finally:
        index.pages = pages
    assert not HybridRetriever(index, built_engine.embedder).search("compost heap", k=3).notes


def test_prose_share_tells_an_index_page_from_prose_code_and_tables():
    from indexer.page_shape import prose_share

    index = "# Index\n\n" + "\n\n".join(f"- entry{i}() (module{i} method)" for i in range(60))
    share, words = prose_share(index)
    assert share == 0.0 and words >= 100
    prose = "# Compost\n\n" + "A compost heap needs green and brown material in balance. " * 20
    assert prose_share(prose)[0] == 1.0
    # code is content: a page of prose and code is prose; a page of code alone has nothing to count
    code = "```\n" + "\n".join(f"x{i} = call(a, b)" for i in range(80)) + "\n```"
    assert prose_share(prose + "\n\n" + code)[0] == 1.0 and prose_share(code) == (1.0, 0)
    # an index laid out as a table (Texinfo) is entries, not sentences
    table = "Index Entry |\nSection |\n" + "\n".join(f"argument {i}: |\nMacro Arguments |" for i in range(40))
    assert prose_share(table)[0] == 0.0


def test_hybrid_fusion_halves_a_list_pages_score_and_only_in_hybrid():
    url = {1: "index", 2: "page", 3: "page"}.get
    lex, dense = [(1, 9.0), (2, 8.0)], [(1, 0.9), (3, 0.8)]
    cfg = RetrieveConfig(page_weight=0.0, page_support=0.0)
    full = fuse_lists("hybrid", cfg, lex, dense, {}, url, lambda u: None)
    demoted = fuse_lists("hybrid", cfg, lex, dense, {}, url, lambda u: None, frozenset({"index"}))
    assert demoted[1] == pytest.approx(0.5 * full[1]) and demoted[2] == full[2] and demoted[3] == full[3]
    assert max(full, key=full.get) == 1 and max(demoted, key=demoted.get) != 1
    off = fuse_lists("hybrid", RetrieveConfig(page_weight=0.0, page_support=0.0, list_page_weight=1.0),
                     lex, dense, {}, url, lambda u: None, frozenset({"index"}))
    assert off == full
    assert fuse_lists("naive", cfg, lex, dense, {}, url, lambda u: None, frozenset({"index"})) == \
        fuse_lists("naive", cfg, lex, dense, {}, url, lambda u: None)
    with pytest.raises(ValueError, match="list_page_weight"):
        RetrieveConfig(list_page_weight=2.0)


def test_the_fixture_sites_pages_are_prose_not_lists(built_engine):
    retriever = built_engine.retriever()
    index = retriever.index
    for url in index.page_chunks:
        assert not retriever.is_list_page(url)
        assert index.prose_share(url) == index.prose_share(url)  # cached, same answer
    cands = retriever.candidates("compost heap")
    assert cands.list_pages == frozenset()
