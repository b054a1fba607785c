"""The crawl store: one DuckDB file holding pages, the fetch log and crawl runs.

Every page write is one transaction, so a crash never leaves a half-written page.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator

import duckdb

from crawler.errors import StoreError
from crawler.types import Page

SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS run_ids START 1;
CREATE TABLE IF NOT EXISTS pages (
    url VARCHAR PRIMARY KEY,          -- normalised canonical URL
    title VARCHAR, text VARCHAR, headings VARCHAR, lang VARCHAR,
    content_hash VARCHAR, etag VARCHAR, last_modified VARCHAR,
    status INTEGER, size_bytes BIGINT,
    deleted BOOLEAN DEFAULT FALSE,
    first_seen TIMESTAMP, last_fetched TIMESTAMP, last_changed TIMESTAMP,
    version INTEGER DEFAULT 1
);
CREATE TABLE IF NOT EXISTS aliases (url VARCHAR PRIMARY KEY, alias_of VARCHAR, reason VARCHAR);
CREATE TABLE IF NOT EXISTS fetch_log (
    run_id BIGINT, url VARCHAR, status INTEGER, size_bytes BIGINT, elapsed_ms DOUBLE,
    outcome VARCHAR, reason VARCHAR, logged_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS crawl_runs (
    run_id BIGINT PRIMARY KEY, started TIMESTAMP, ended TIMESTAMP, seeds VARCHAR, report VARCHAR
);
"""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class CrawlStore:
    """Read and write access to the crawl store file."""

    def __init__(self, path: str, read_only: bool = False):
        self.path = path
        if read_only and not os.path.exists(path):
            raise StoreError(f"no crawl store at {path}; run `fathom crawl URL` first")
        try:
            if not read_only:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.db = duckdb.connect(path, read_only=read_only)
            if not read_only:
                self.db.execute(SCHEMA)
        except duckdb.IOException as exc:
            raise StoreError(f"cannot open crawl store {path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "CrawlStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- runs -------------------------------------------------------------
    def start_run(self, seeds: list[str]) -> int:
        run_id = self.db.execute("SELECT nextval('run_ids')").fetchone()[0]
        self.db.execute("INSERT INTO crawl_runs VALUES (?, ?, NULL, ?, NULL)",
                        [run_id, _now(), json.dumps(seeds)])
        return int(run_id)

    def end_run(self, run_id: int, report: dict) -> None:
        self.db.execute("UPDATE crawl_runs SET ended = ?, report = ? WHERE run_id = ?",
                        [_now(), json.dumps(report), run_id])

    # --- pages ------------------------------------------------------------
    def validators(self, url: str) -> tuple[str | None, str | None]:
        """ETag and Last-Modified stored for `url`, for a conditional GET."""
        row = self.db.execute("SELECT etag, last_modified FROM pages WHERE url = ? AND NOT deleted",
                              [url]).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def known_hash(self, url: str) -> str | None:
        row = self.db.execute("SELECT content_hash FROM pages WHERE url = ? AND NOT deleted", [url]).fetchone()
        return row[0] if row else None

    def hash_owner(self, content_hash: str, url: str) -> str | None:
        """Another live page with exactly this content, if any."""
        row = self.db.execute(
            "SELECT url FROM pages WHERE content_hash = ? AND url <> ? AND NOT deleted LIMIT 1",
            [content_hash, url]).fetchone()
        return row[0] if row else None

    def upsert_page(self, *, url: str, title: str, text: str, headings: list[str], lang: str,
                    content_hash: str, etag: str | None, last_modified: str | None, status: int,
                    size_bytes: int) -> str:
        """Store a fetched page; returns 'new', 'changed' or 'unchanged'."""
        now = _now()
        self.db.execute("BEGIN TRANSACTION")
        try:
            row = self.db.execute("SELECT content_hash, deleted FROM pages WHERE url = ?", [url]).fetchone()
            if row is None:
                outcome = "new"
                self.db.execute(
                    "INSERT INTO pages VALUES (?,?,?,?,?,?,?,?,?,?,FALSE,?,?,?,1)",
                    [url, title, text, json.dumps(headings), lang, content_hash, etag, last_modified,
                     status, size_bytes, now, now, now])
            elif row[0] == content_hash and not row[1]:
                outcome = "unchanged"
                self.db.execute("UPDATE pages SET last_fetched = ?, etag = ?, last_modified = ? WHERE url = ?",
                                [now, etag, last_modified, url])
            else:
                outcome = "changed" if not row[1] else "new"
                self.db.execute(
                    "UPDATE pages SET title=?, text=?, headings=?, lang=?, content_hash=?, etag=?, "
                    "last_modified=?, status=?, size_bytes=?, deleted=FALSE, last_fetched=?, "
                    "last_changed=?, version = version + 1 WHERE url = ?",
                    [title, text, json.dumps(headings), lang, content_hash, etag, last_modified, status,
                     size_bytes, now, now, url])
            self.db.execute("DELETE FROM aliases WHERE url = ?", [url])
            self.db.execute("COMMIT")
        except Exception:
            self.db.execute("ROLLBACK")
            raise
        return outcome

    def touch(self, url: str) -> None:
        """Mark a page fetched now without change (HTTP 304)."""
        self.db.execute("UPDATE pages SET last_fetched = ? WHERE url = ?", [_now(), url])

    def tombstone(self, url: str, status: int) -> bool:
        """Mark a page gone (404/410); returns True if a live page was tombstoned."""
        row = self.db.execute("SELECT deleted FROM pages WHERE url = ?", [url]).fetchone()
        if row is None or row[0]:
            return False
        self.db.execute("UPDATE pages SET deleted = TRUE, status = ?, last_changed = ?, last_fetched = ? "
                        "WHERE url = ?", [status, _now(), _now(), url])
        return True

    def add_alias(self, url: str, alias_of: str, reason: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", [url, alias_of, reason])

    def log_fetch(self, run_id: int, url: str, status: int, size_bytes: int, elapsed_ms: float,
                  outcome: str, reason: str = "") -> None:
        self.db.execute("INSERT INTO fetch_log VALUES (?,?,?,?,?,?,?,?)",
                        [run_id, url, status, size_bytes, elapsed_ms, outcome, reason, _now()])

    # --- reading ----------------------------------------------------------
    def pages(self) -> Iterator[Page]:
        """All live pages, in URL order."""
        cur = self.db.execute(
            "SELECT url, title, text, content_hash, lang, CAST(last_fetched AS VARCHAR), "
            "CAST(last_changed AS VARCHAR) FROM pages WHERE NOT deleted ORDER BY url")
        while batch := cur.fetchmany(256):
            for r in batch:
                yield Page(url=r[0], title=r[1] or "", text=r[2] or "", content_hash=r[3] or "",
                           lang=r[4] or "", fetched_at=r[5] or "", changed_at=r[6] or "")

    def page_hashes(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT url, content_hash FROM pages WHERE NOT deleted").fetchall())

    def stats(self) -> dict:
        live, deleted = self.db.execute(
            "SELECT count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted) FROM pages").fetchone()
        aliases = self.db.execute("SELECT count(*) FROM aliases").fetchone()[0]
        last = self.db.execute("SELECT run_id, CAST(started AS VARCHAR), CAST(ended AS VARCHAR), report "
                               "FROM crawl_runs ORDER BY run_id DESC LIMIT 1").fetchone()
        return {"pages": live, "deleted": deleted, "aliases": aliases,
                "last_run": None if last is None else {
                    "run_id": last[0], "started": last[1], "ended": last[2],
                    "report": json.loads(last[3]) if last[3] else None}}
