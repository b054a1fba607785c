"""A crawl store written by an older Fathom still opens for reading (it is upgraded in place)."""
import duckdb

from crawler.store import CrawlStore

OLD_SCHEMA = """
CREATE TABLE pages (
    url VARCHAR PRIMARY KEY, title VARCHAR, text VARCHAR, headings VARCHAR, lang VARCHAR,
    content_hash VARCHAR, etag VARCHAR, last_modified VARCHAR, status INTEGER, size_bytes BIGINT,
    deleted BOOLEAN DEFAULT FALSE, first_seen TIMESTAMP, last_fetched TIMESTAMP, last_changed TIMESTAMP,
    version INTEGER DEFAULT 1);
INSERT INTO pages (url, title, text, content_hash, lang, last_fetched, last_changed)
VALUES ('http://h/a.html', 'A', '# A\n\nsome text', 'x', 'en', TIMESTAMP '2026-01-02 03:04:05',
        TIMESTAMP '2026-01-02 03:04:05');
"""


def test_old_store_is_upgraded_when_opened_for_reading(tmp_path):
    path = str(tmp_path / "crawl.duckdb")
    with duckdb.connect(path) as db:
        db.execute(OLD_SCHEMA)
    store = CrawlStore(path, read_only=True)
    pages = list(store.pages())
    store.close()
    assert [p.url for p in pages] == ["http://h/a.html"]
    assert pages[0].modified_at == "" and pages[0].fetched_at.startswith("2026-01-02")
