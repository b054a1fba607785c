import os

import duckdb
import pytest

from crawler.config import CrawlConfig
from crawler.errors import CrawlError
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
