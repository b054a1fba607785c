"""Near-duplicate detection: SimHash fingerprints and near_duplicate aliases."""
from crawler.config import CrawlConfig
from crawler.run import crawl
from crawler.simhash import distance, simhash
from tests.test_crawl import html, prose, query, serve, stored

TEXT = prose("original article", 800)
# one word changed and a date line added: what a mirror or a reprint with a new footer differs by
EDITED = " ".join(TEXT.split()[:200] + ["changed"] + TEXT.split()[201:]) + " Last updated 2024-05-01."


def test_small_edits_stay_within_three_bits_and_other_texts_do_not():
    assert distance(simhash(TEXT), simhash(TEXT)) == 0
    assert distance(simhash(TEXT), simhash(EDITED)) <= 3
    assert distance(simhash(TEXT), simhash(TEXT.upper())) == 0  # case is ignored
    others = [prose(f"other {i}", 800) for i in range(20)]
    assert min(distance(simhash(TEXT), simhash(o)) for o in others) > 3


def test_fingerprints_are_signed_64_bit_and_empty_text_is_zero():
    values = [simhash(prose(str(i))) for i in range(50)]
    assert all(-(1 << 63) <= v < (1 << 63) for v in values) and any(v < 0 for v in values)
    assert simhash("") == 0 and simhash("  ... ") == 0


def test_a_near_duplicate_page_becomes_an_alias_of_the_page_kept(tmp_path):
    routes = {"/docs/index.html": html("Index", links=["article.html", "mirror.html", "other.html"]),
              "/docs/article.html": html("Article", body=TEXT),
              "/docs/mirror.html": html("Article", body=EDITED),
              "/docs/other.html": html("Other")}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, _):
        report = crawl([base + "docs/index.html"], CrawlConfig(), db)
        again = crawl([base + "docs/index.html"], CrawlConfig(), db)
        off = str(tmp_path / "off.duckdb")
        crawl([base + "docs/index.html"], CrawlConfig(near_duplicate_bits=-1), off)
    names = {u.rsplit("/", 1)[-1] for u in stored(db)}
    assert {"index.html", "other.html"} < names and len(names & {"article.html", "mirror.html"}) == 1
    ((alias, kept, reason),) = query(db, "SELECT url, alias_of, reason FROM aliases")
    assert reason == "near_duplicate" and kept.rsplit("/", 1)[-1] in names and alias != kept
    assert report.new == 3 and report.skipped.get("near_duplicate") == 1
    assert again.new == 0 and again.skipped.get("near_duplicate") == 1  # stable on a recrawl
    assert len(stored(off)) == 4  # near_duplicate_bits = -1 keeps both


SHORT = prose("short note", 72)
SHORT_PLUS = " ".join(SHORT.split()[:36] + ["additionally"] + SHORT.split()[36:])  # one inserted word


def test_short_pages_differing_by_one_word_are_near_duplicates_by_minhash(tmp_path):
    from crawler.minhash import MinHashIndex, signature
    assert distance(simhash(SHORT), simhash(SHORT_PLUS)) > 3  # SimHash alone misses this pair
    index = MinHashIndex(0.7)
    index.add("a", signature(SHORT))
    for i in range(20):
        index.add(f"other{i}", signature(prose(f"short other {i}", 72)))
    assert index.nearest(signature(SHORT_PLUS), exclude="b") == "a"
    assert index.nearest(signature(prose("unrelated", 72)), exclude="b") is None
    routes = {"/docs/index.html": html("Index", links=["a.html", "b.html", "c.html"]),
              "/docs/a.html": html("Note", body=SHORT), "/docs/b.html": html("Note", body=SHORT_PLUS),
              "/docs/c.html": html("Other note", body=prose("another short note", 72))}
    db = str(tmp_path / "crawl.duckdb")
    with serve(routes) as (base, _):
        report = crawl([base + "docs/index.html"], CrawlConfig(), db)
        simhash_only = str(tmp_path / "simhash.duckdb")
        crawl([base + "docs/index.html"], CrawlConfig(near_duplicate_jaccard=0), simhash_only)
    names = {u.rsplit("/", 1)[-1] for u in stored(db)}
    assert "c.html" in names and len(names & {"a.html", "b.html"}) == 1
    assert report.skipped.get("near_duplicate") == 1
    assert {"a.html", "b.html"} <= {u.rsplit("/", 1)[-1] for u in stored(simhash_only)}  # what SimHash did
