import contextlib
import http.server
import os
import random
import threading
import time
from urllib.parse import urlsplit

import duckdb
import pytest

from crawler.config import CrawlConfig
from core.errors import CrawlError
from crawler.run import crawl
from crawler.store import CrawlStore
from fathom.localsite import serve_directory
from tests.conftest import write_site


@pytest.fixture()
def fresh_site(tmp_path):
    root = tmp_path / "site"
    write_site(str(root))
    with serve_directory(str(root)) as base:
        yield root, base


def stored(path):
    with CrawlStore(path, read_only=True) as store:
        return {p.url: p for p in store.pages()}


def query(path, sql, params=()):
    """Rows of `sql` run read-only against the crawl store at `path`."""
    with duckdb.connect(path, read_only=True) as db:
        return db.execute(sql, list(params)).fetchall()


_VOCAB = [f"{a}{b}" for a in ("lorem", "vapor", "tidal", "copper", "marble", "quartz")
          for b in ("stone", "field", "river", "ember", "frost", "glade", "haven", "spire")]


def prose(seed: str, words: int = 120) -> str:
    """Deterministic filler text; different seeds give texts far apart in SimHash."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_VOCAB) for _ in range(words))


def html(title: str, body: str = "", links=(), head: str = "") -> bytes:
    """A small HTML page with its own text (seeded by title) and the given links."""
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (f"<!DOCTYPE html><html><head><title>{title}</title>{head}</head><body><h1>{title}</h1>"
            f"<p>{body or prose(title)}</p><ul>{anchors}</ul></body></html>").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves the server's `routes`: path (without query) -> bytes (an HTML page), a
    (status, headers, body) tuple, or a callable taking this handler. Unknown paths are 404.
    Every request is appended to the server's `log` as (path with query, monotonic time)."""

    def do_GET(self):
        self.server.log.append((self.path, time.monotonic()))
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            route = (404, {}, b"not found")
        if callable(route):
            return route(self)
        if isinstance(route, bytes):
            route = (200, {"Content-Type": "text/html; charset=utf-8"}, route)
        self.reply(*route)

    def reply(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve(routes: dict):
    """Yield (base URL, request log) of a threaded local server for `routes` (see Handler)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.routes, server.log = routes, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server.log
    finally:
        server.shutdown()
        server.server_close()


def requested(log, path: str) -> int:
    """How many times the server was asked for `path` (query included)."""
    return sum(1 for p, _ in log if p == path)


def test_crawl_stores_in_scope_pages_and_reports_skips(fresh_site, tmp_path):
    root, base = fresh_site
    db = str(tmp_path / "crawl.duckdb")
    report = crawl([base + "docs/index.html"], CrawlConfig(), db)
    pages = stored(db)
    names = sorted(u.rsplit("/", 1)[-1] for u in pages)
    assert names == ["compost.html", "index.html", "tomatoes.html", "watering.html"]
    assert report.new == 4 and report.errors >= 1  # missing.html is a 404
    assert report.skipped.get("not_html") == 1  # seeds.bin
    assert report.skipped.get("http_404") == 1
    tomatoes = next(p for u, p in pages.items() if u.endswith("tomatoes.html"))
    assert "suckers" in tomatoes.text and "NAVIGATIONJUNK" not in tomatoes.text
    assert "FOOTERJUNK" not in tomatoes.text


def test_robots_disallow_is_respected(fresh_site, tmp_path):
    root, base = fresh_site
    db = str(tmp_path / "crawl.duckdb")
    report = crawl([base + "docs/index.html"], CrawlConfig(path_prefixes=("/",)), db)
    assert not any("secret" in u for u in stored(db))
    assert report.skipped.get("robots") == 1
    log = duckdb.connect(db, read_only=True).execute(
        "SELECT count(*) FROM fetch_log WHERE url LIKE '%secret%' AND reason = 'robots'").fetchone()[0]
    assert log == 1


def test_recrawl_marks_unchanged_then_changed_then_deleted(fresh_site, tmp_path):
    root, base = fresh_site
    db = str(tmp_path / "crawl.duckdb")
    crawl([base + "docs/index.html"], CrawlConfig(), db)
    again = crawl([base + "docs/index.html"], CrawlConfig(), db)
    assert again.new == 0 and again.changed == 0 and again.unchanged == 4

    page = root / "docs" / "compost.html"
    page.write_text(page.read_text().replace("three months", "six months"))
    os.utime(page, (page.stat().st_atime + 10, page.stat().st_mtime + 10))  # new Last-Modified
    (root / "docs" / "watering.html").unlink()
    third = crawl([base + "docs/index.html"], CrawlConfig(), db)
    assert third.changed == 1 and third.deleted == 1
    pages = stored(db)
    assert "six months" in next(p.text for u, p in pages.items() if u.endswith("compost.html"))
    assert not any(u.endswith("watering.html") for u in pages)


def test_max_pages_limits_the_crawl(fresh_site, tmp_path):
    _, base = fresh_site
    db = str(tmp_path / "crawl.duckdb")
    report = crawl([base + "docs/index.html"], CrawlConfig(), db, max_pages=2)
    assert len(stored(db)) == 2
    assert report.skipped.get("max_pages", 0) >= 1


def test_new_limits_are_validated():
    with pytest.raises(ValueError, match="max_query_variants"):
        CrawlConfig(max_query_variants=0)
    with pytest.raises(ValueError, match="negative"):
        CrawlConfig(retry_backoff_s=-1.0)
    with pytest.raises(ValueError, match="near_duplicate_bits"):
        CrawlConfig(near_duplicate_bits=65)


def test_bad_seed_is_a_clear_error(tmp_path):
    with pytest.raises(CrawlError, match="not an http"):
        crawl(["ftp://nowhere/x"], CrawlConfig(), str(tmp_path / "c.duckdb"))


def test_non_utf8_page_without_charset_is_decoded(tmp_path):
    root = tmp_path / "latin"
    root.mkdir()
    (root / "index.html").write_bytes("<html><body><p>Caf\xe9 cr\xe8me br\xfbl\xe9e recipe</p></body></html>"
                                      .encode("latin-1"))
    db = str(tmp_path / "crawl.duckdb")
    with serve_directory(str(root)) as base:
        crawl([base + "index.html"], CrawlConfig(), db)
    (page,) = stored(db).values()
    assert "crème" in page.text


PLUGGED = '''
import json, sys
from scrapy.core.scheduler import Scheduler
from scrapy.dupefilters import RFPDupeFilter
import crawler.run

SEEN = []

class RecordingDupeFilter(RFPDupeFilter):
    def request_seen(self, request):
        SEEN.append(request.url)
        return super().request_seen(request)

class PluggedScheduler(Scheduler):
    def close(self, reason):
        with open(sys.argv[1], "w") as f:
            json.dump({"scheduler": type(self).__name__, "dupefilter": type(self.df).__name__, "seen": SEEN}, f)
        return super().close(reason)

base = crawler.run.scrapy_settings
crawler.run.scrapy_settings = lambda config: {**base(config), "SCHEDULER": PluggedScheduler,
                                              "DUPEFILTER_CLASS": RecordingDupeFilter}
crawler.run._child()
'''


def test_scheduler_and_dupefilter_are_replaced_through_scrapy_settings_alone(fresh_site, tmp_path):
    """What scrapy-redis needs: the spider works with another SCHEDULER and DUPEFILTER_CLASS."""
    import dataclasses
    import json
    import subprocess
    import sys

    _, base = fresh_site
    script, used = tmp_path / "plugged.py", tmp_path / "used.json"
    script.write_text(PLUGGED)
    db = str(tmp_path / "crawl.duckdb")
    job = {"seeds": [base + "docs/index.html"], "store": db, "config": dataclasses.asdict(CrawlConfig())}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, str(script), str(used)], input=json.dumps(job), capture_output=True,
                          text=True, cwd=root, env={**os.environ, "PYTHONPATH": root}, check=True)
    report = json.loads(proc.stdout.splitlines()[-1])
    info = json.loads(used.read_text())
    assert info["scheduler"] == "PluggedScheduler" and info["dupefilter"] == "RecordingDupeFilter"
    assert any(u.endswith("/docs/tomatoes.html") for u in info["seen"])
    assert report["new"] == 4 and report["skipped"]["http_404"] == 1
    assert sorted(u.rsplit("/", 1)[-1] for u in stored(db)) == ["compost.html", "index.html", "tomatoes.html",
                                                                "watering.html"]
