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

from core.errors import StoreError
from crawler.known import Known, KnownPages
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
-- crawler.minhash signature (128 x uint32) for near-duplicate detection
ALTER TABLE pages ADD COLUMN IF NOT EXISTS minhash BLOB;
ALTER TABLE crawl_runs ADD COLUMN IF NOT EXISTS job VARCHAR;
-- sha256 of the raw body: the same body fetched again is unchanged without extraction
ALTER TABLE pages ADD COLUMN IF NOT EXISTS body_hash VARCHAR;
-- when the page says it last changed (ISO 8601): <meta>/<time> dates, else Last-Modified or sitemap <lastmod>
ALTER TABLE pages ADD COLUMN IF NOT EXISTS modified_at VARCHAR;
-- one row per stored version of a page (version 1 when new, +1 each time its text changes)
-- the normalised out-links of each page (under the URL it was fetched by, and its canonical URL) as of
-- its last extraction: an unchanged page (304, same body) still leads to the pages it links to
CREATE TABLE IF NOT EXISTS links (url VARCHAR PRIMARY KEY, targets VARCHAR[]);
CREATE TABLE IF NOT EXISTS page_versions (
    url VARCHAR, version INTEGER, content_hash VARCHAR, fetched_at TIMESTAMP, size_bytes BIGINT,
    PRIMARY KEY (url, version)
);
"""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


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
            elif not self._current():
                self._upgrade()
        except (duckdb.Error, OSError) as exc:  # DuckDB edge: locked, damaged, unreadable, read-only
            raise StoreError(f"cannot open crawl store {path}: {_first_line(exc)}") from None

    def _current(self) -> bool:
        """Whether the file has every table and column this version reads."""
        cols = {r[0] for r in self.db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'pages'").fetchall()}
        tables = {r[0] for r in self.db.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return {"modified_at", "body_hash", "simhash", "minhash"} <= cols and "page_versions" in tables

    def _upgrade(self) -> None:
        """A store written by an older Fathom: add the new columns (once, read-write), reopen."""
        self.db.close()
        try:
            with duckdb.connect(self.path) as db:
                db.execute(SCHEMA)
        except duckdb.IOException as exc:
            raise StoreError(f"crawl store {self.path} was written by an older Fathom and could not be "
                             f"upgraded ({exc}); run `fathom crawl` once when no other Fathom process uses it") from None
        self.db = duckdb.connect(self.path, read_only=True)

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
    def known_pages(self, near_jaccard: float = 0.7) -> KnownPages:
        """Every page row (tombstones included) as the in-memory view a crawl works from."""
        rows = self.db.execute("SELECT url, content_hash, body_hash, etag, last_modified, deleted, simhash, "
                               "minhash FROM pages").fetchall()
        return KnownPages({r[0]: Known(r[1] or "", r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows},
                          near_jaccard)

    def unfollowed_links(self) -> dict[str, list[str]]:
        """url -> its recorded out-links that lead to no stored page or alias (in link order)."""
        rows = self.db.execute(
            "SELECT l.url, list(l.t ORDER BY l.i) FROM (SELECT url, unnest(targets) AS t, "
            "generate_subscripts(targets, 1) AS i FROM links) AS l "
            "WHERE l.t NOT IN (SELECT url FROM pages) AND l.t NOT IN (SELECT url FROM aliases) "
            "GROUP BY l.url").fetchall()
        return {u: list(ts) for u, ts in rows}

    def pages_without_links(self) -> set[str]:
        """Live pages whose out-links were never recorded (stored before `links` existed)."""
        return {u for (u,) in self.db.execute(
            "SELECT url FROM pages WHERE NOT deleted AND url NOT IN (SELECT url FROM links)").fetchall()}

    def alias_urls(self) -> list[str]:
        """URLs recorded as aliases of a stored page, in URL order."""
        return [u for (u,) in self.db.execute("SELECT url FROM aliases ORDER BY url").fetchall()]

    def write(self, batch: "WriteBatch") -> None:
        """Apply `batch` in one transaction: a crash keeps all of it or none of it."""
        if batch.empty():
            return
        with self.transaction():
            batch.apply(self.db)

    # --- reading ----------------------------------------------------------
    def pages(self) -> Iterator[Page]:
        """All live pages, in URL order."""
        cur = self.db.execute(
            "SELECT url, title, text, content_hash, lang, CAST(last_fetched AS VARCHAR), "
            "CAST(last_changed AS VARCHAR), modified_at FROM pages WHERE NOT deleted ORDER BY url")
        while batch := cur.fetchmany(256):
            for r in batch:
                yield Page(url=r[0], title=r[1] or "", text=r[2] or "", content_hash=r[3] or "",
                           lang=r[4] or "", fetched_at=r[5] or "", changed_at=r[6] or "",
                           modified_at=r[7] or "")

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


    def sites(self) -> list[dict]:
        """Live and deleted page counts and the last fetch time per host."""
        rows = self.db.execute(
            "SELECT regexp_extract(url, '^[a-z]+://([^/]*)', 1) AS host, count(*) FILTER (WHERE NOT deleted), "
            "count(*) FILTER (WHERE deleted), CAST(max(last_fetched) AS VARCHAR) FROM pages "
            "GROUP BY host ORDER BY host").fetchall()
        return [{"host": r[0] or "(local files)", "pages": r[1], "deleted": r[2], "last_fetched": r[3]}
                for r in rows]

    def outcomes(self, limit: int = 500, host: str = "") -> list[dict]:
        """The latest fetch outcome of each URL (fetched, unchanged, skipped, ... with the reason), newest first."""
        rows = self.db.execute(
            "SELECT url, outcome, reason, status, CAST(logged_at AS VARCHAR), run_id FROM fetch_log "
            "WHERE (? = '' OR url LIKE '%://' || ? || '/%') "
            "QUALIFY row_number() OVER (PARTITION BY url ORDER BY logged_at DESC, run_id DESC) = 1 "
            "ORDER BY logged_at DESC, url LIMIT ?", [host, host, limit]).fetchall()
        return [{"url": r[0], "outcome": r[1], "reason": r[2] or "", "status": r[3], "logged_at": r[4],
                 "run_id": r[5]} for r in rows]

    # --- batch jobs (fathom run) ------------------------------------------
    def record_job(self, name: str, started: dt.datetime, ok: bool, report: dict) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS job_runs (name VARCHAR, started TIMESTAMP, ended TIMESTAMP, "
                        "ok BOOLEAN, report VARCHAR)")
        self.db.execute("INSERT INTO job_runs VALUES (?, ?, ?, ?, ?)",
                        [name, started, _now(), ok, json.dumps(report, default=str)])

    def last_job_success(self, name: str) -> dt.datetime | None:
        """When the batch job `name` last finished without error (UTC, naive), or None."""
        try:
            row = self.db.execute("SELECT max(started) FROM job_runs WHERE name = ? AND ok", [name]).fetchone()
        except duckdb.CatalogException:  # no job has run in this store yet
            return None
        return row[0] if row else None

_PAGE_COLUMNS = ("url", "title", "text", "headings", "lang", "content_hash", "body_hash", "etag",
                 "last_modified", "modified_at", "status", "size_bytes", "simhash", "minhash", "fetched")
_PAGE_TYPES = ("VARCHAR",) * 10 + ("INTEGER", "BIGINT", "BIGINT", "BLOB", "TIMESTAMP")


def _unnest(columns: tuple[str, ...], types: tuple[str, ...]) -> str:
    """SELECT zipping one list parameter per column into rows."""
    return "SELECT " + ", ".join(f"unnest(?::{t}[]) AS {c}" for c, t in zip(columns, types))


class WriteBatch:
    """Store writes collected by a crawl and applied together by `CrawlStore.write`.

    Per-row statements with a commit each cost 1 to 5 ms in DuckDB, more than fetching and
    extracting a page; one transaction of bulk statements per batch costs about as much as
    one of them. The order inside a batch keeps the frontier rule: the URLs found on a page
    are saved before (in the same commit as) that page is marked done."""

    def __init__(self, run_id: int, job: str = ""):
        self.run_id, self.job = run_id, job
        self.pages: dict[str, tuple] = {}  # url -> row (see _PAGE_COLUMNS) + (kind, exists)
        self.touched: dict[str, tuple] = {}  # url -> (etag, last_modified, fetched)
        self.gone: dict[str, tuple[int, dt.datetime]] = {}
        self.aliases: dict[str, tuple[str, str]] = {}
        self.out_links: dict[str, list[str]] = {}
        self.log: list[tuple] = []
        self.scheduled: list[tuple[str, int]] = []
        self.done: list[str] = []

    def __len__(self) -> int:
        return len(self.log) + len(self.aliases)

    def empty(self) -> bool:
        return not (self.pages or self.touched or self.gone or self.aliases or self.out_links or self.log
                    or self.scheduled)

    def page(self, kind: str, exists: bool, *, url: str, title: str, text: str, headings: list[str], lang: str,
             content_hash: str, body_hash: str | None, etag: str | None, last_modified: str | None,
             modified_at: str, status: int, size_bytes: int, simhash: int | None,
             minhash: bytes | None = None) -> None:
        """Store a page: `kind` is 'new', 'changed' or 'unchanged' (as KnownPages.put said), and
        `exists` whether the store has a row for it (live or a tombstone) before this batch."""
        prev = self.pages.get(url)
        if prev is not None:  # stored twice in one batch: one write with the later values
            kind = prev[-2] if prev[-2] == "new" else kind
            exists = prev[-1]
        self.pages[url] = (url, title, text, json.dumps(headings), lang, content_hash, body_hash, etag,
                           last_modified, modified_at, status, size_bytes, simhash, minhash, _now(), kind, exists)
        self.aliases.pop(url, None)

    def touch(self, url: str, etag: str | None = None, last_modified: str | None = None) -> None:
        """The page was fetched now and had not changed (304, or the same body)."""
        self.touched[url] = (etag, last_modified, _now())

    def tombstone(self, url: str, status: int) -> None:
        self.gone[url] = (status, _now())

    def alias(self, url: str, alias_of: str, reason: str) -> None:
        self.aliases[url] = (alias_of, reason)

    def links(self, url: str, targets: list[str]) -> None:
        """The out-links found on `url` (replacing those recorded before)."""
        self.out_links[url] = targets

    def fetched(self, url: str, status: int, size_bytes: int, elapsed_ms: float, outcome: str,
                reason: str = "", scheduled: list[tuple[str, int]] = (), done: bool = True) -> None:
        """Log the outcome for `url`; with `done`, it is finished in the job's frontier, after the
        (url, depth) pairs `scheduled` while handling it are added there."""
        self.log.append((self.run_id, url, status, size_bytes, elapsed_ms, outcome, reason, _now()))
        self.scheduled.extend(scheduled)
        if done:
            self.done.append(url)

    def apply(self, db) -> None:
        if self.job and self.scheduled:
            db.execute("INSERT OR IGNORE INTO frontier (job, url, depth) "
                       "SELECT ?, unnest(?::VARCHAR[]), unnest(?::INTEGER[])",
                       [self.job, [u for u, _ in self.scheduled], [d for _, d in self.scheduled]])
        rows = list(self.pages.values())
        if rows:
            self._apply_pages(db, rows)
        if self.touched:
            urls = list(self.touched)
            db.execute("UPDATE pages SET last_fetched = v.fetched, etag = coalesce(v.etag, pages.etag), "
                       "last_modified = coalesce(v.last_modified, pages.last_modified) FROM (" +
                       _unnest(("url", "etag", "last_modified", "fetched"), ("VARCHAR",) * 3 + ("TIMESTAMP",)) +
                       ") AS v WHERE pages.url = v.url",
                       [urls, *[[self.touched[u][i] for u in urls] for i in range(3)]])
        if self.gone:
            urls = list(self.gone)
            db.execute("UPDATE pages SET deleted = TRUE, status = v.status, last_changed = v.at, "
                       "last_fetched = v.at FROM (" + _unnest(("url", "status", "at"),
                                                              ("VARCHAR", "INTEGER", "TIMESTAMP")) +
                       ") AS v WHERE pages.url = v.url AND NOT pages.deleted",
                       [urls, [self.gone[u][0] for u in urls], [self.gone[u][1] for u in urls]])
        if self.aliases:
            urls = list(self.aliases)
            db.execute("INSERT OR REPLACE INTO aliases " + _unnest(("url", "alias_of", "reason"), ("VARCHAR",) * 3),
                       [urls, [self.aliases[u][0] for u in urls], [self.aliases[u][1] for u in urls]])
        if self.out_links:
            urls = list(self.out_links)
            db.execute("INSERT OR REPLACE INTO links SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[][])",
                       [urls, [self.out_links[u] for u in urls]])
        if self.log:
            cols = list(zip(*self.log))
            db.execute("INSERT INTO fetch_log " + _unnest(
                ("run_id", "url", "status", "size_bytes", "elapsed_ms", "outcome", "reason", "logged_at"),
                ("BIGINT", "VARCHAR", "INTEGER", "BIGINT", "DOUBLE", "VARCHAR", "VARCHAR", "TIMESTAMP")),
                [list(c) for c in cols])
        if self.job and self.done:
            db.execute("UPDATE frontier SET done = TRUE WHERE job = ? AND url IN (SELECT unnest(?::VARCHAR[]))",
                       [self.job, self.done])

    @staticmethod
    def _apply_pages(db, rows: list[tuple]) -> None:
        v = "(" + _unnest(_PAGE_COLUMNS, _PAGE_TYPES) + ") AS v"
        db.execute("DELETE FROM aliases WHERE url IN (SELECT unnest(?::VARCHAR[]))", [[r[0] for r in rows]])
        fresh = [r[:-2] for r in rows if not r[-1]]
        if fresh:
            db.execute("INSERT INTO pages (url, title, text, headings, lang, content_hash, body_hash, etag, "
                       "last_modified, modified_at, status, size_bytes, simhash, minhash, deleted, first_seen, "
                       f"last_fetched, last_changed, version) SELECT v.* EXCLUDE (fetched), FALSE, v.fetched, "
                       f"v.fetched, v.fetched, 1 FROM {v}", [list(c) for c in zip(*fresh)])
        for kind, bump in (("unchanged", 0), ("changed", 1)):  # 'new' with a row: a tombstone back
            old = [r[:-2] for r in rows if r[-1] and (r[-2] == "unchanged") == (kind == "unchanged")]
            if not old:
                continue
            last_changed = "pages.last_changed" if kind == "unchanged" else "v.fetched"
            db.execute("UPDATE pages SET title = v.title, text = v.text, headings = v.headings, lang = v.lang, "
                       "content_hash = v.content_hash, body_hash = v.body_hash, etag = v.etag, "
                       "last_modified = v.last_modified, modified_at = v.modified_at, status = v.status, "
                       "size_bytes = v.size_bytes, simhash = v.simhash, minhash = v.minhash, deleted = FALSE, "
                       f"last_fetched = v.fetched, last_changed = {last_changed}, version = pages.version + {bump} "
                       f"FROM {v} WHERE pages.url = v.url", [list(c) for c in zip(*old)])
        versioned = [r[0] for r in rows if r[-2] != "unchanged"]
        if versioned:
            db.execute("INSERT OR REPLACE INTO page_versions SELECT url, version, content_hash, last_fetched, "
                       "size_bytes FROM pages WHERE url IN (SELECT unnest(?::VARCHAR[]))", [versioned])
