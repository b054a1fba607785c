"""Crawling local files: a directory or a file:// seed, scope under the seed's directory,
304-style recrawl by mtime and size, tombstones for deleted files."""
import pytest

from crawler.config import CrawlConfig
from core.errors import CrawlError
from crawler.run import crawl
from tests.test_crawl import html, query, stored


@pytest.fixture()
def local_site(tmp_path):
    root = tmp_path / "docs"
    (root / "guide").mkdir(parents=True)
    (root / "index.html").write_bytes(html("Local index", links=["guide/a.html", "../outside.html"]))
    (root / "guide" / "a.html").write_bytes(html("Guide A", links=["../index.html", "../"]))
    (root / "orphan.htm").write_bytes(html("Orphan page"))  # linked from nowhere
    (root / "notes.txt").write_text("plain text, not a page")
    (tmp_path / "outside.html").write_bytes(html("Outside the seed directory"))
    return root


def names(db):
    """Stored pages by their path under the site's docs/ directory."""
    return sorted(u.rsplit("/docs/", 1)[-1] for u in stored(db))


def test_a_directory_crawls_every_html_file_under_it_and_nothing_outside(local_site, tmp_path):
    db = str(tmp_path / "crawl.duckdb")
    report = crawl([str(local_site)], CrawlConfig(), db)
    assert names(db) == ["guide/a.html", "index.html", "orphan.htm"]
    assert report.new == 3 and report.errors == 0
    assert all(u.startswith("file://") for u in stored(db))
    assert not query(db, "SELECT url FROM fetch_log WHERE url LIKE '%outside%'")


def test_a_file_url_seed_follows_links_within_its_directory(local_site, tmp_path):
    db = str(tmp_path / "crawl.duckdb")
    report = crawl([(local_site / "index.html").as_uri()], CrawlConfig(), db)
    assert names(db) == ["guide/a.html", "index.html"]  # the orphan is not linked
    # a link to the directory itself leads to its index.html, as on a web server
    assert report.errors == 0 and report.skipped.get("canonical") == 1
    assert query(db, "SELECT alias_of FROM aliases WHERE url = ?", [local_site.as_uri() + "/"]) == \
        [((local_site / "index.html").as_uri(),)]


def test_local_recrawl_skips_unchanged_files_and_sees_changes_and_deletions(local_site, tmp_path):
    db = str(tmp_path / "crawl.duckdb")
    crawl([str(local_site)], CrawlConfig(), db)
    again = crawl([str(local_site)], CrawlConfig(), db)
    assert (again.unchanged, again.extracted, again.new, again.changed) == (3, 0, 0, 0)
    assert query(db, "SELECT count(*) FROM fetch_log WHERE run_id = 2 AND status = 304")[0][0] == 3

    page = local_site / "guide" / "a.html"
    page.write_bytes(html("Guide A", body="rewritten guide text about local crawling"))
    (local_site / "orphan.htm").unlink()
    third = crawl([str(local_site)], CrawlConfig(), db)
    assert (third.changed, third.deleted, third.unchanged, third.extracted) == (1, 1, 1, 1)
    assert names(db) == ["guide/a.html", "index.html"]
    assert "rewritten guide text" in next(p.text for u, p in stored(db).items() if u.endswith("a.html"))


def test_a_local_file_past_max_page_bytes_is_too_large(local_site, tmp_path):
    (local_site / "big.html").write_bytes(html("Big", body="word " * 5000))
    db = str(tmp_path / "crawl.duckdb")
    report = crawl([str(local_site)], CrawlConfig(max_page_bytes=10_000), db)
    assert report.skipped.get("too_large") == 1 and "big.html" not in " ".join(stored(db))


def test_a_missing_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(CrawlError, match="does not exist"):
        crawl([str(tmp_path / "nowhere")], CrawlConfig(), str(tmp_path / "c.duckdb"))
