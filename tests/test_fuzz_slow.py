"""Hostile input, fuzzed with hypothesis (bounded examples, slow tier): the HTML extractor, URL
normalisation and the query path. Nothing may escape but Fathom's own errors."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import FathomError
from crawler.extract import extract_html
from crawler.urls import normalize_url
from retriever.hybrid import Filters

pytestmark = pytest.mark.slow
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

TAGS = ["div", "p", "span", "table", "tr", "td", "pre", "code", "h1", "h2", "script", "style", "noscript",
        "a", "ul", "li", "nav", "main", "article", "template", "svg", "math", "base", "meta", "title", "br"]
ATTRS = ['', ' href="javascript:x"', ' href="//[::1"', ' href="http://a:99999/"', ' style="display:none"',
         ' hidden', ' role="main"', ' class="nav"', ' content="2024-13-45"', ' charset="x-unknown"', ' href=" "',
         ' property="article:modified_time" content="not a date"', ' lang="\x00"']
fragments = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["<!--", "-->", "<![CDATA[", "]]>", "<?xml version='1.0' encoding='utf-16'?>", "&#0;",
                     "&#x110000;", "&bogus;", "\x00", "\ufeff", "\ud7ff", "<", ">", "</", "/>", "'", '"']),
    st.tuples(st.sampled_from(TAGS), st.sampled_from(ATTRS)).map(lambda t: f"<{t[0]}{t[1]}>"),
    st.sampled_from(TAGS).map(lambda t: f"</{t}>"))
documents = st.one_of(
    st.lists(fragments, max_size=80).map("".join),
    st.integers(1, 3000).map(lambda n: "<div>" * n + "deep" + "</div>" * n),  # deeply nested
    st.integers(1, 200_000).map(lambda n: "<p>" + "word " * n + "</p>"),  # huge
    st.binary(max_size=400).map(lambda b: b.decode("latin-1")))


@FUZZ
@given(documents, st.sampled_from(["", "http://example.test/a/b.html", "file:///tmp/x.html", "not a url"]))
def test_extractor_never_raises_anything_but_fathom_errors(doc, base):
    try:
        out = extract_html(doc, base)
    except FathomError:
        return
    assert isinstance(out.text, str) and "\x00" not in out.title


urls = st.one_of(
    st.text(max_size=60),
    st.builds(lambda s, h, p, q, f: f"{s}://{h}{p}?{q}#{f}",
              st.sampled_from(["http", "https", "HTTP", "file", "ftp", ""]),
              st.one_of(st.text(max_size=20), st.sampled_from(["[::1]", "[::1", "a:99999", "a:-1", "a:x", "é.test",
                                                               "xn--a.test", "user:pw@h", "%00"])),
              st.text(max_size=20), st.text(max_size=20), st.text(max_size=10)))


@FUZZ
@given(urls)
def test_url_normalisation_never_raises_anything_but_fathom_errors(url):
    try:
        out = normalize_url(url)
    except FathomError:
        return
    assert isinstance(out, str)
    try:
        assert normalize_url(out) == out  # normalising is idempotent
    except FathomError:
        pass


queries = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(['"', "(", ")", "AND", "OR", "NOT", "-", "+", "*", "?", "~2", "^3", ":", "title:",
                              "url:", "[", "]", "{", "}", "\\", "/", "\x00", "compost", "heap", "IN", "TO",
                              "chunk_id:1", "body:*", "'", "!"]), max_size=40).map(" ".join),
    st.integers(1, 50_000).map(lambda n: "a" * n))
dates = st.one_of(st.just(""), st.text(max_size=12), st.sampled_from(["2024-01-01", "2024-13-01", "9999-12-31",
                                                                       "0001-01-01", "2024-01-01T25:00", "Z"]))


@pytest.fixture(scope="module")
def retriever(built_engine):
    return built_engine.retriever()


@FUZZ
@given(queries, st.text(max_size=20), dates, dates, st.sampled_from(["hybrid", "bm25", "dense"]),
       st.lists(st.text(max_size=5), max_size=2))
def test_query_path_never_raises_anything_but_fathom_errors(retriever, q, prefix, since, until, engines, langs):
    try:
        filters = Filters(url_prefix=prefix, since=since, until=until, langs=tuple(langs))
        result = retriever.search(q, k=5, engines=engines, filters=filters, rerank=False)
    except FathomError:
        return
    assert len(result.hits) <= 5
