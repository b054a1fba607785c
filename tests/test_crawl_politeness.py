"""Politeness: robots.txt Crawl-delay, Retry-After, and retries that back off."""
import itertools

from crawler.config import CrawlConfig
from crawler.politeness import retry_after_seconds
from crawler.run import crawl
from tests.test_crawl import html, requested, serve, stored


def arrivals(log, path):
    return [t for p, t in log if p == path]


def test_robots_crawl_delay_spaces_requests_to_the_host(tmp_path):
    pages = [f"p{i}.html" for i in range(4)]
    routes = {"/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nCrawl-delay: 1\n"),
              "/docs/index.html": html("Index", links=pages),
              **{f"/docs/{p}": html(p) for p in pages}}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        report = crawl([base + "docs/index.html"], CrawlConfig(concurrency_per_host=8), db)
    assert report.new == 5
    paths, times = zip(*log)
    times = times[paths.index("/robots.txt"):]  # robots.txt, then sitemap.xml and the pages
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 5 and min(gaps) >= 0.9  # one request a second, despite 8 allowed at once


def test_retry_after_on_503_is_waited_for_then_the_page_is_stored(tmp_path):
    calls = []

    def busy(handler):
        calls.append(1)
        if len(calls) == 1:
            return handler.reply(503, {"Retry-After": "1"}, b"busy")
        handler.reply(200, {"Content-Type": "text/html"}, html("Busy page"))

    routes = {"/docs/index.html": html("Index", links=["busy.html"]), "/docs/busy.html": busy}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        report = crawl([base + "docs/index.html"], CrawlConfig(retry_backoff_s=0.0), db)
    first, second = arrivals(log, "/docs/busy.html")
    assert second - first >= 0.9  # the backoff is 0 here, so the wait is Retry-After's
    assert report.new == 2 and any(u.endswith("busy.html") for u in stored(db))


def test_retry_after_beyond_the_maximum_wait_gives_up_at_once(tmp_path):
    routes = {"/docs/index.html": html("Index", links=["limited.html"]),
              "/docs/limited.html": (429, {"Retry-After": "3600"}, b"slow down")}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        report = crawl([base + "docs/index.html"], CrawlConfig(max_retry_wait_s=5.0), db)
    assert requested(log, "/docs/limited.html") == 1
    assert report.skipped.get("http_429") == 1 and report.new == 1


def test_server_errors_are_retried_with_growing_backoff(tmp_path):
    calls = []

    def flaky(handler):
        calls.append(1)
        if len(calls) <= 2:
            return handler.reply(500, {}, b"oops")
        handler.reply(200, {"Content-Type": "text/html"}, html("Flaky page"))

    routes = {"/docs/index.html": html("Index", links=["flaky.html", "broken.html"]),
              "/docs/flaky.html": flaky, "/docs/broken.html": (502, {}, b"bad gateway")}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        report = crawl([base + "docs/index.html"], CrawlConfig(retries=2, retry_backoff_s=0.3), db)
    t = arrivals(log, "/docs/flaky.html")
    assert len(t) == 3 and t[1] - t[0] >= 0.27 and t[2] - t[1] >= 0.54  # 0.3 s, then doubled
    assert requested(log, "/docs/broken.html") == 3  # the first try and two retries
    assert report.skipped.get("http_502") == 1
    assert {u.rsplit("/", 1)[-1] for u in stored(db)} == {"index.html", "flaky.html"}


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert 3000 < retry_after_seconds("Fri, 01 Jan 2100 00:00:00 GMT") and retry_after_seconds("soon") is None
