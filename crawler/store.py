"""The crawl store: one DuckDB file holding pages, the fetch log and crawl runs.

Every page write is one transaction, so a crash never leaves a half-written page, and
the frontier of a crawl job is kept here so a killed crawl can resume where it stopped.
"""
from __future__ import annotations

import contextlib
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
-- URLs an unfinished crawl job has scheduled; `done` once the fetch log holds their outcome
CREATE TABLE IF NOT EXISTS frontier (
    job VARCHAR, url VARCHAR, depth INTEGER, done BOOLEAN DEFAULT FALSE, PRIMARY KEY (job, url)
);
ALTER TABLE pages ADD COLUMN IF NOT EXISTS simhash BIGINT;
ALTER TABLE crawl_runs ADD COLUMN IF NOT EXISTS job VARCHAR;
"""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class CrawlStore:
    """Read and write access to the crawl store file."""

    def __init__(self, path: str, read_only: bool = False):
        self.path = path
        self._in_transaction = False
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

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the writes inside one transaction (one commit); a nested use joins the outer one."""
        if self._in_transaction:
            yield
            return
        self.db.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._in_transaction = False

    def __enter__(self) -> "CrawlStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- runs -------------------------------------------------------------
    def start_run(self, seeds: list[str], job: str = "") -> int:
        run_id = self.db.execute("SELECT nextval('run_ids')").fetchone()[0]
        self.db.execute("INSERT INTO crawl_runs (run_id, started, seeds, job) VALUES (?, ?, ?, ?)",
                        [run_id, _now(), json.dumps(seeds), job])
        return int(run_id)

    def end_run(self, run_id: int, report: dict) -> None:
        self.db.execute("UPDATE crawl_runs SET ended = ?, report = ? WHERE run_id = ?",
                        [_now(), json.dumps(report), run_id])

    # --- frontier ---------------------------------------------------------
    def frontier(self, job: str) -> tuple[set[str], list[tuple[str, int]]]:
        """What an interrupted run of `job` left: URLs done, and (url, depth) still to fetch."""
        rows = self.db.execute("SELECT url, depth, done FROM frontier WHERE job = ? ORDER BY depth, url",
                               [job]).fetchall()
        return {u for u, _, done in rows if done}, [(u, d) for u, d, done in rows if not done]

    def clear_frontier(self, job: str) -> None:
        """Forget the frontier of `job` once it has finished."""
        self.db.execute("DELETE FROM frontier WHERE job = ?", [job])

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

    def near_owner(self, simhash: int, url: str, max_bits: int) -> str | None:
        """Another live page whose SimHash is within `max_bits` bits of `simhash`, if any."""
        row = self.db.execute(
            "SELECT url FROM pages WHERE NOT deleted AND url <> ? AND simhash IS NOT NULL "
            "AND bit_count(xor(simhash, ?::BIGINT)) <= ? ORDER BY bit_count(xor(simhash, ?::BIGINT)), url "
            "LIMIT 1", [url, simhash, max_bits, simhash]).fetchone()
        return row[0] if row else None

    def upsert_page(self, *, url: str, title: str, text: str, headings: list[str], lang: str,
                    content_hash: str, etag: str | None, last_modified: str | None, status: int,
                    size_bytes: int, simhash: int | None = None) -> str:
        """Store a fetched page; returns 'new', 'changed' or 'unchanged'."""
        now = _now()
        with self.transaction():
            row = self.db.execute("SELECT content_hash, deleted FROM pages WHERE url = ?", [url]).fetchone()
            if row is None:
                outcome = "new"
                self.db.execute(
                    "INSERT INTO pages (url, title, text, headings, lang, content_hash, etag, last_modified, "
                    "status, size_bytes, deleted, first_seen, last_fetched, last_changed, version, simhash) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,FALSE,?,?,?,1,?)",
                    [url, title, text, json.dumps(headings), lang, content_hash, etag, last_modified,
                     status, size_bytes, now, now, now, simhash])
            elif row[0] == content_hash and not row[1]:
                outcome = "unchanged"
                self.db.execute("UPDATE pages SET last_fetched = ?, etag = ?, last_modified = ?, "
                                "simhash = coalesce(?, simhash) WHERE url = ?",
                                [now, etag, last_modified, simhash, url])
            else:
                outcome = "changed" if not row[1] else "new"
                self.db.execute(
                    "UPDATE pages SET title=?, text=?, headings=?, lang=?, content_hash=?, etag=?, "
                    "last_modified=?, status=?, size_bytes=?, deleted=FALSE, last_fetched=?, "
                    "last_changed=?, version = version + 1, simhash = ? WHERE url = ?",
                    [title, text, json.dumps(headings), lang, content_hash, etag, last_modified, status,
                     size_bytes, now, now, simhash, url])
            self.db.execute("DELETE FROM aliases WHERE url = ?", [url])
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
                  outcome: str, reason: str = "", job: str = "",
                  scheduled: list[tuple[str, int]] | tuple = ()) -> None:
        """Log the outcome of fetching `url`. With `job`, in the same transaction: add the
        (url, depth) pairs `scheduled` since the last log to that job's frontier, and mark
        `url` done there, so a URL is never done before the links found on it are saved."""
        with self.transaction():
            self.db.execute("INSERT INTO fetch_log VALUES (?,?,?,?,?,?,?,?)",
                            [run_id, url, status, size_bytes, elapsed_ms, outcome, reason, _now()])
            if job and scheduled:
                self.db.execute("INSERT OR IGNORE INTO frontier (job, url, depth) "
                                "SELECT ?, unnest(?::VARCHAR[]), unnest(?::INTEGER[])",
                                [job, [u for u, _ in scheduled], [d for _, d in scheduled]])
            if job:
                self.db.execute("UPDATE frontier SET done = TRUE WHERE job = ? AND url = ?", [job, url])

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
