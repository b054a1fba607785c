"""Bad input never crashes a crawl: each bad URL is skipped with a reason, the rest is stored."""
import io
import socket
import struct
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from crawler.config import CrawlConfig
from crawler.run import crawl
from crawler.traps import TrapGuard
from tests.test_crawl import html, requested, serve, stored


def crawl_site(tmp_path, bad_link: str, routes: dict, **config):
    """Crawl an index linking good.html and `bad_link`; returns (report, stored file names, request log)."""
    site = {"/docs/index.html": html("Index", links=["good.html", bad_link]),
            "/docs/good.html": html("Good page"), **routes}
    db = str(tmp_path / "crawl.duckdb")
    with serve(site) as (base, log):
        report = crawl([base + "docs/index.html"], CrawlConfig(**config), db)
    return report, sorted(u.rsplit("/", 1)[-1] for u in stored(db)), log


def test_binary_behind_an_html_url(tmp_path):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
    routes = {"/docs/photo.html": (200, {"Content-Type": "text/html"}, png)}
    report, names, _ = crawl_site(tmp_path, "photo.html", routes)
    assert report.skipped.get("binary") == 1
    assert names == ["good.html", "index.html"]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "close-delimited"])
def test_page_over_max_page_bytes(tmp_path, declared):
    body = html("Huge", body="word " * 60_000)

    def huge(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        if declared:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except OSError:
            pass  # the crawler hung up once it had enough

    report, names, _ = crawl_site(tmp_path, "huge.html", {"/docs/huge.html": huge}, max_page_bytes=100_000)
    assert report.skipped.get("too_large") == 1
    assert names == ["good.html", "index.html"]


@pytest.mark.parametrize("loop", [True, False], ids=["loop", "long-chain"])
def test_redirect_loop(tmp_path, loop):
    if loop:  # a -> b -> a
        routes = {"/docs/r0.html": (302, {"Location": "r1.html"}, b""),
                  "/docs/r1.html": (302, {"Location": "r0.html"}, b"")}
    else:  # r0 -> r1 -> ... -> r9, more hops than max_redirects
        routes = {f"/docs/r{i}.html": (302, {"Location": f"r{i + 1}.html"}, b"") for i in range(9)}
        routes["/docs/r9.html"] = html("End of chain")
    report, names, log = crawl_site(tmp_path, "r0.html", routes, max_redirects=5)
    assert report.skipped.get("redirect_loop") == 1
    assert names == ["good.html", "index.html"]
    assert len(log) < 20  # the loop was not followed for long


def test_infinite_calendar_is_a_trap(tmp_path):
    def calendar(handler):
        month = int(parse_qs(urlsplit(handler.path).query)["month"][0])
        page = html(f"Month {month}", links=[f"calendar.html?month={month - 1}", f"calendar.html?month={month + 1}"])
        handler.reply(200, {"Content-Type": "text/html"}, page)

    report, names, log = crawl_site(tmp_path, "calendar.html?month=0", {"/docs/calendar.html": calendar},
                                    max_query_variants=5)
    assert report.skipped.get("trap", 0) >= 1
    assert sum(1 for path, _ in log if path.startswith("/docs/calendar.html")) == 5
    assert "good.html" in names and "index.html" in names and len(names) == 7


def test_trap_guard_counts_query_variants_per_path_and_repeated_segments():
    guard = TrapGuard(max_query_variants=2)
    assert not guard.is_trap("http://h/cal?m=1") and not guard.is_trap("http://h/cal?m=2")
    assert guard.is_trap("http://h/cal?m=3")
    assert not guard.is_trap("http://h/cal?m=1")  # a variant already let through stays allowed
    assert not guard.is_trap("http://h/other?m=3") and not guard.is_trap("http://h/cal")
    assert guard.is_trap("http://h/a/b/a/b/a/b/a/b/page.html")
    assert not guard.is_trap("http://h/2024/01/01/page.html")


def test_links_deeper_than_max_depth_are_not_followed(tmp_path):
    routes = {"/docs/d1.html": html("Depth one", links=["d2.html"]),
              "/docs/d2.html": html("Depth two", links=["d3.html"]), "/docs/d3.html": html("Depth three")}
    report, names, log = crawl_site(tmp_path, "d1.html", routes, max_depth=2)
    assert report.skipped.get("max_depth") == 1 and requested(log, "/docs/d3.html") == 0
    assert names == ["d1.html", "d2.html", "good.html", "index.html"]


def test_slow_server_times_out(tmp_path):
    def slow(handler):
        time.sleep(4)  # never answers within timeout_s

    report, names, _ = crawl_site(tmp_path, "slow.html", {"/docs/slow.html": slow}, timeout_s=1.0, retries=0)
    assert report.skipped.get("timeout") == 1 and report.errors == 1
    assert names == ["good.html", "index.html"]


def test_connection_reset_is_retried_then_skipped(tmp_path):
    def reset(handler):
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()  # RST instead of a response
        handler.close_connection = True
        handler.wfile = io.BytesIO()  # nothing left to flush to the closed socket

    report, names, log = crawl_site(tmp_path, "reset.html", {"/docs/reset.html": reset},
                                    retries=1, retry_backoff_s=0.1)
    assert report.skipped.get("connection_lost") == 1
    assert requested(log, "/docs/reset.html") == 2  # retried once
    assert names == ["good.html", "index.html"]


def test_unparseable_links_are_ignored_and_their_page_kept(tmp_path):
    broken = ["http://[broken/x.html", "http://127.0.0.1:99999/y.html", "http://h:port/z.html"]
    routes = {"/docs/links.html": html("Links page", links=broken + ["good.html"])}
    report, names, _ = crawl_site(tmp_path, "links.html", routes)
    assert names == ["good.html", "index.html", "links.html"]
    assert report.errors == 0 and "spider_error" not in report.skipped
