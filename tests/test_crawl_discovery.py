"""Discovery beyond links: sitemaps, and rel=canonical keeping one fetch per canonical URL."""
import gzip

from crawler.config import CrawlConfig
from crawler.run import crawl
from tests.test_crawl import html, query, requested, serve, stored

XML = {"Content-Type": "application/xml"}
NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def urlset(*urls: str) -> bytes:
    entries = "".join(f"<url><loc>{u}</loc></url>" for u in urls)
    return f'<?xml version="1.0"?><urlset xmlns="{NS}">{entries}</urlset>'.encode()


def sitemap_site(base: str) -> dict:
    index = (f'<?xml version="1.0"?><sitemapindex xmlns="{NS}">'
             f"<sitemap><loc>{base}maps/a.xml</loc></sitemap><sitemap><loc>{base}maps/b.xml.gz</loc></sitemap>"
             "</sitemapindex>").encode()
    return {
        "/robots.txt": (200, {"Content-Type": "text/plain"},
                        f"User-agent: *\nSitemap: {base}maps/index.xml\n".encode()),
        "/maps/index.xml": (200, XML, index),
        "/maps/a.xml": (200, XML, urlset(f"{base}docs/orphan1.html", f"{base}other/outside.html")),
        "/maps/b.xml.gz": (200, {"Content-Type": "application/gzip"},
                           gzip.compress(urlset(f"{base}docs/orphan2.html"))),
        "/sitemap.xml": (200, XML, urlset(f"{base}docs/orphan3.html")),
        "/docs/index.html": html("Index"),
        **{f"/docs/orphan{i}.html": html(f"Orphan {i}") for i in (1, 2, 3)},
        "/other/outside.html": html("Outside"),
    }


def test_sitemaps_from_robots_indexes_gzip_and_the_default_location_are_followed(tmp_path):
    routes = {}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        routes.update(sitemap_site(base))
        report = crawl([base + "docs/index.html"], CrawlConfig(), db)
    names = sorted(u.rsplit("/", 1)[-1] for u in stored(db))
    assert names == ["index.html", "orphan1.html", "orphan2.html", "orphan3.html"]
    assert requested(log, "/other/outside.html") == 0  # listed, but out of scope
    assert report.new == 4 and report.errors == 0


def test_sitemaps_can_be_turned_off(tmp_path):
    routes = {}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        routes.update(sitemap_site(base))
        crawl([base + "docs/index.html"], CrawlConfig(sitemaps=False), db)
    assert [u.rsplit("/", 1)[-1] for u in stored(db)] == ["index.html"]
    assert requested(log, "/sitemap.xml") == 0 and requested(log, "/maps/index.xml") == 0


def test_a_canonical_url_is_fetched_at_most_once_and_aliases_are_recorded(tmp_path):
    canonical = '<link rel="canonical" href="main.html">'
    routes = {
        "/docs/index.html": html("Index", links=["a.html"]),
        # a.html claims main.html before main.html is discovered (from a.html itself)
        "/docs/a.html": html("Main page", links=["main.html", "b.html"], head=canonical),
        "/docs/b.html": html("Main page", body="printable version " + "text " * 30, head=canonical),
        "/docs/main.html": html("Main page"),
    }
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        report = crawl([base + "docs/index.html"], CrawlConfig(), db)
    assert requested(log, "/docs/main.html") == 0
    assert sorted(u.rsplit("/", 1)[-1] for u in stored(db)) == ["index.html", "main.html"]
    aliases = {(u.rsplit("/", 1)[-1], a.rsplit("/", 1)[-1], r)
               for u, a, r in query(db, "SELECT url, alias_of, reason FROM aliases")}
    assert aliases == {("a.html", "main.html", "canonical"), ("b.html", "main.html", "canonical")}
    assert report.new == 2 and report.skipped.get("canonical") == 1  # b.html: main.html was already stored


def test_a_redirect_to_a_page_also_linked_directly_fetches_that_page_once(tmp_path):
    routes = {"/docs/index.html": html("Index", links=["old.html", "new.html"]),
              "/docs/old.html": (301, {"Location": "new.html"}, b""),
              "/docs/new.html": html("New page")}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, log):
        report = crawl([base + "docs/index.html"], CrawlConfig(), db)
    assert requested(log, "/docs/new.html") == 1
    assert sorted(u.rsplit("/", 1)[-1] for u in stored(db)) == ["index.html", "new.html"]
    ((alias_of,),) = query(db, "SELECT alias_of FROM aliases WHERE url LIKE '%/old.html'")
    assert alias_of.endswith("/new.html")
    assert report.new == 2 and report.skipped.get("canonical") == 1 and report.errors == 0
