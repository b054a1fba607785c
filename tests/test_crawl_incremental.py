"""Recrawl accounting: report counts against the fetch log, page versions, unchanged bodies
without re-extraction, dates and language stored, and pages that lie about their charset."""
import os

import duckdb

from crawler.config import CrawlConfig
from crawler.run import crawl
from tests.test_crawl import fresh_site, html, query, serve, stored  # noqa: F401 (fixture)


def logged(db, run_id):
    return query(db, "SELECT count(*) FROM fetch_log WHERE run_id = ?", [run_id])[0][0]


def counted(report):
    """Every URL a run logged is stored (new/changed/unchanged) or skipped for one reason."""
    return report.new + report.changed + report.unchanged + sum(report.skipped.values())


def test_report_counts_sum_to_the_fetch_log_and_a_second_run_is_all_unchanged(fresh_site, tmp_path):
    _, base = fresh_site
    db = str(tmp_path / "crawl.duckdb")
    config = CrawlConfig(path_prefixes=("/",))  # reaches robots-disallowed /private/ too
    first = crawl([base + "docs/index.html"], config, db)
    assert first.new == 4 and first.skipped["robots"] == 1 and first.skipped["http_404"] == 1
    assert counted(first) == logged(db, first.run_id)
    assert first.extracted == 4

    second = crawl([base + "docs/index.html"], config, db)
    assert counted(second) == logged(db, second.run_id)
    assert (second.new, second.changed, second.unchanged, second.extracted) == (0, 0, 4, 0)
    assert second.pages_total == first.pages_total == 4


def test_pages_refused_by_max_pages_are_counted_and_logged(fresh_site, tmp_path):
    _, base = fresh_site
    db = str(tmp_path / "crawl.duckdb")
    report = crawl([base + "docs/index.html"], CrawlConfig(), db, max_pages=2)
    assert report.skipped["max_pages"] >= 1
    assert counted(report) == logged(db, report.run_id)
    assert query(db, "SELECT count(*) FROM fetch_log WHERE reason = 'max_pages' AND status = 0")[0][0] == \
        report.skipped["max_pages"]


def test_a_changed_page_gets_version_two_and_both_versions_are_kept(fresh_site, tmp_path):
    root, base = fresh_site
    db = str(tmp_path / "crawl.duckdb")
    crawl([base + "docs/index.html"], CrawlConfig(), db)
    page = root / "docs" / "compost.html"
    page.write_text(page.read_text().replace("three months", "six months"))
    os.utime(page, (page.stat().st_atime + 10, page.stat().st_mtime + 10))
    report = crawl([base + "docs/index.html"], CrawlConfig(), db)
    assert report.changed == 1 and report.extracted == 1
    url = base + "docs/compost.html"
    versions = query(db, "SELECT version, content_hash FROM page_versions WHERE url = ? ORDER BY version", [url])
    assert [v for v, _ in versions] == [1, 2] and versions[0][1] != versions[1][1]
    assert query(db, "SELECT version, content_hash FROM pages WHERE url = ?", [url]) == [versions[1]]
    assert query(db, "SELECT count(*) FROM page_versions")[0][0] == 5  # 4 pages, one changed once


def test_same_body_without_validators_is_unchanged_without_extraction(tmp_path):
    routes = {"/docs/index.html": html("Index", links=["a.html"]), "/docs/a.html": html("Page A")}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):  # this server sends neither ETag nor Last-Modified
        crawl([base + "docs/index.html"], CrawlConfig(), db)
        again = crawl([base + "docs/index.html"], CrawlConfig(), db)
        routes["/docs/a.html"] = html("Page A", body="entirely new words here")
        third = crawl([base + "docs/index.html"], CrawlConfig(), db)
    assert (again.unchanged, again.extracted) == (2, 0)
    assert query(db, "SELECT count(*) FROM fetch_log WHERE run_id = 2 AND reason = 'same_body'")[0][0] == 2
    assert (third.changed, third.unchanged, third.extracted) == (1, 1, 1)


def test_dates_from_meta_sitemap_and_last_modified_are_stored(tmp_path):
    ns = "http://www.sitemaps.org/schemas/sitemap/0.9"
    routes = {}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, _):
        routes.update({
            "/sitemap.xml": (200, {"Content-Type": "application/xml"},
                             f'<urlset xmlns="{ns}"><url><loc>{base}docs/mapped.html</loc>'
                             "<lastmod>2023-04-05</lastmod></url></urlset>".encode()),
            "/docs/index.html": html("Index", links=["meta.html", "header.html"],
                                     head='<meta property="article:modified_time" content="2024-02-03T10:00:00Z">'),
            "/docs/meta.html": html("Meta page", head='<meta name="date" content="2022-01-02">'),
            "/docs/header.html": (200, {"Content-Type": "text/html", "Last-Modified": "Tue, 05 Mar 2024 10:20:00 GMT"},
                                  html("Header page")),
            "/docs/mapped.html": html("Mapped page"),
        })
        crawl([base + "docs/index.html"], CrawlConfig(), db)
    dates = {u.rsplit("/", 1)[-1]: p.modified_at for u, p in stored(db).items()}
    assert dates == {"index.html": "2024-02-03T10:00:00+00:00", "meta.html": "2022-01-02",
                     "header.html": "2024-03-05T10:20:00+00:00", "mapped.html": "2023-04-05"}


def test_language_is_detected_when_the_page_does_not_declare_it(tmp_path):
    german = ("Die Stadt liegt an einem Fluss und ist für ihre Brücken bekannt. Sie hat eine lange "
              "Geschichte, und die Einwohner sind stolz auf den Hafen, der im Mittelalter zu den "
              "wichtigsten der Region gehörte. Heute ist sie ein Zentrum für Handel und Kultur.")
    routes = {"/docs/index.html": html("Index", links=["de.html"]), "/docs/de.html": html("Stadt", body=german)}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, _):
        crawl([base + "docs/index.html"], CrawlConfig(), db)
    langs = {u.rsplit("/", 1)[-1]: p.lang for u, p in stored(db).items()}
    assert langs["de.html"] == "de"
    assert langs["index.html"] == ""  # random filler words: no language is sure


def test_page_declaring_utf8_but_sent_in_cp1252_is_decoded(tmp_path):
    body = "<html><body><p>Cr\u00e8me br\u00fbl\u00e9e costs 5\u20ac \u2013 a caf\u00e9 classic</p></body></html>"
    routes = {"/docs/index.html": (200, {"Content-Type": "text/html; charset=utf-8"}, body.encode("cp1252"))}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, _):
        crawl([base + "docs/index.html"], CrawlConfig(), db)
    (page,) = stored(db).values()
    assert "Crème brûlée costs 5€ – a café classic" in page.text


def test_utf8_page_declaring_latin1_is_decoded_as_utf8(tmp_path):
    body = "<html><head><meta charset='iso-8859-1'></head><body><p>Smørrebrød på Nørrebro</p></body></html>"
    routes = {"/docs/index.html": (200, {"Content-Type": "text/html"}, body.encode("utf-8"))}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, _):
        crawl([base + "docs/index.html"], CrawlConfig(), db)
    (page,) = stored(db).values()
    assert "Smørrebrød på Nørrebro" in page.text


def test_recrawl_without_the_cap_follows_links_of_unchanged_pages(fresh_site, tmp_path):
    """A crawl capped by max_pages, then recrawled without the cap: the pages stored first come
    back unchanged (304), and the links they hold still lead to the pages the cap refused."""
    _, base = fresh_site
    db = str(tmp_path / "crawl.duckdb")
    first = crawl([base + "docs/index.html"], CrawlConfig(), db, max_pages=1)
    assert first.new == 1 and first.skipped["max_pages"] >= 1
    second = crawl([base + "docs/index.html"], CrawlConfig(), db)
    assert second.unchanged == 1 and second.new == 3
    assert len(stored(db)) == 4 and counted(second) == logged(db, second.run_id)
    third = crawl([base + "docs/index.html"], CrawlConfig(), db)  # nothing left unfollowed
    assert (third.new, third.unchanged, third.extracted) == (0, 4, 0)


def test_links_of_a_same_body_page_lead_on_through_a_chain(tmp_path):
    """No validators (the same body is 'unchanged' without extraction): a page refused by the cap
    two links away from the seed is reached by the recrawl, and the links it holds are followed."""
    routes = {"/docs/index.html": html("Index", links=["a.html"]), "/docs/a.html": html("A", links=["b.html"]),
              "/docs/b.html": html("B", links=["c.html"]), "/docs/c.html": html("C")}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        first = crawl([base + "docs/index.html"], CrawlConfig(sitemaps=False), db, max_pages=2)
        assert first.new == 2 and first.skipped["max_pages"] == 1  # index and a; b refused
        second = crawl([base + "docs/index.html"], CrawlConfig(sitemaps=False), db)
    assert (second.unchanged, second.new, second.extracted) == (2, 2, 2)
    assert {u.rsplit("/", 1)[-1] for u in stored(db)} == {"index.html", "a.html", "b.html", "c.html"}


def test_pages_stored_before_links_were_recorded_are_fetched_in_full_once(fresh_site, tmp_path):
    """A store from an older Fathom has no out-links: its pages are extracted again (unchanged)
    on the next crawl, which records their links; the crawl after that is all 304s."""
    _, base = fresh_site
    db = str(tmp_path / "crawl.duckdb")
    crawl([base + "docs/index.html"], CrawlConfig(), db)
    with duckdb.connect(db) as con:
        con.execute("DELETE FROM links")
    second = crawl([base + "docs/index.html"], CrawlConfig(), db)
    assert (second.unchanged, second.extracted, second.new) == (4, 4, 0)
    third = crawl([base + "docs/index.html"], CrawlConfig(), db)
    assert (third.unchanged, third.extracted) == (4, 0)
