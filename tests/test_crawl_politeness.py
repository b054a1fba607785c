"""Politeness: robots.txt Crawl-delay, Retry-After, and retries that back off.

No wall-clock thresholds: Crawl-delay is checked as how many requests the server has in flight at
once, and retry waits as the waits the crawler reports (`CrawlReport.retry_wait_s`) together with
the order of requests in the server's log."""
import threading

import pytest

from crawler.config import CrawlConfig
from crawler.politeness import retry_after_seconds
from crawler.run import crawl
from tests.test_crawl import html, requested, serve, stored


class InFlight:
    """Page handlers that count the requests the server is answering at once. Each holds its
    reply until another request arrives or `hold_s` passes, so requests the crawler sends
    together are seen together."""

    def __init__(self, hold_s: float):
        self.hold_s, self.now, self.most = hold_s, 0, 0
        self.cond = threading.Condition()

    def route(self, body: bytes):
        def handle(handler):
            with self.cond:
                self.now += 1
                self.most = max(self.most, self.now)
                self.cond.notify_all()
                self.cond.wait_for(lambda: self.most > 1, timeout=self.hold_s)  # once seen, hold no more
            try:
                handler.reply(200, {"Content-Type": "text/html"}, body)
            finally:
                with self.cond:
                    self.now -= 1
        return handle


def crawl_delay_site(tmp_path, robots: bytes, hold_s: float) -> tuple[InFlight, list]:
    """Crawl an index linking 4 pages (8 requests allowed at once); the pages count in-flight."""
    flight = InFlight(hold_s)
    pages = [f"p{i}.html" for i in range(4)]
    routes = {"/robots.txt": (200, {"Content-Type": "text/plain"}, robots),
              "/docs/index.html": html("Index", links=pages), **{f"/docs/{p}": flight.route(html(p)) for p in pages}}
    with serve(routes) as (base, log):
        report = crawl([base + "docs/index.html"], CrawlConfig(concurrency_per_host=8, sitemaps=False),
                       str(tmp_path / "crawl.duckdb"))
    assert report.new == 5
    paths = [p for p, _ in log]
    assert paths[:2] == ["/robots.txt", "/docs/index.html"]  # robots.txt before any page
    return flight, paths


def test_robots_crawl_delay_makes_requests_to_the_host_one_at_a_time(tmp_path):
    # each page holds its reply 0.3 s (well under the 1 s delay) unless another request comes in
    flight, _ = crawl_delay_site(tmp_path, b"User-agent: *\nCrawl-delay: 1\n", hold_s=0.3)
    assert flight.most == 1


def test_without_crawl_delay_the_pages_are_fetched_together(tmp_path):
    # the control: the same site without Crawl-delay has several pages in flight at once
    flight, _ = crawl_delay_site(tmp_path, b"User-agent: *\n", hold_s=5.0)
    assert flight.most >= 2


def test_retry_after_on_503_is_waited_for_then_the_page_is_stored(tmp_path):
    def busy(handler):
        if requested(log, "/docs/busy.html") == 1:
            return handler.reply(503, {"Retry-After": "1"}, b"busy")
        handler.reply(200, {"Content-Type": "text/html"}, html("Busy page"))

    routes = {"/docs/index.html": html("Index", links=["busy.html"]), "/docs/busy.html": busy}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        report = crawl([base + "docs/index.html"], CrawlConfig(retry_backoff_s=0.0), db)
    assert requested(log, "/docs/busy.html") == 2
    assert report.retry_wait_s == 1.0  # the backoff is 0 here, so the wait is Retry-After's
    assert report.new == 2 and any(u.endswith("busy.html") for u in stored(db))


def test_retry_after_beyond_the_maximum_wait_gives_up_at_once(tmp_path):
    routes = {"/docs/index.html": html("Index", links=["limited.html"]),
              "/docs/limited.html": (429, {"Retry-After": "3600"}, b"slow down")}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        report = crawl([base + "docs/index.html"], CrawlConfig(max_retry_wait_s=5.0), db)
    assert requested(log, "/docs/limited.html") == 1
    assert report.skipped.get("http_429") == 1 and report.new == 1 and report.retry_wait_s == 0.0


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
    assert requested(log, "/docs/flaky.html") == 3 and requested(log, "/docs/broken.html") == 3  # 1 try + 2 retries
    assert report.retry_wait_s == pytest.approx(2 * (0.3 + 0.6))  # 0.3 s, then doubled, for each page
    assert report.skipped.get("http_502") == 1
    assert {u.rsplit("/", 1)[-1] for u in stored(db)} == {"index.html", "flaky.html"}


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert 3000 < retry_after_seconds("Fri, 01 Jan 2100 00:00:00 GMT") and retry_after_seconds("soon") is None
