"""Batch jobs: crawl, then incrementally index, every source a JOBS.toml file names.

    [[source]]
    name = "python-docs"
    seeds = ["https://docs.python.org/3/"]
    every = "24h"          # optional: with --due, run only when this long has passed since the last success
    max_pages = 500        # optional [crawl] settings for this source (include, exclude, max_depth, ...)

`run_jobs` is what `fathom run` and `fathom serve --jobs` call. A file lock in the data directory
keeps two runs from overlapping; the last success of each source is recorded in the crawl store.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
from filelock import FileLock, Timeout

from core.errors import ConfigError, FathomError, JobsLocked, StoreError
from crawler.config import CrawlConfig, from_dict
from crawler.store import CrawlStore
from fathom.config import read_toml

# Exit codes of `fathom run` (75 is EX_TEMPFAIL from sysexits.h: cron may simply retry later)
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_LOCKED = 0, 1, 2, 3, 75

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_interval(text: str, where: str) -> float:
    """"90s", "30m", "24h", "7d", "1w" (or "1h30m") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.strip().lower())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smhdw])|\s", "", text.lower()):
        raise ConfigError(f"{where}: every = {text!r} is not an interval like \"30m\", \"24h\" or \"7d\"")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"{where}: every must be longer than zero")
    return seconds


@dataclass(frozen=True)
class Source:
    """One `[[source]]` of a jobs file."""

    name: str
    seeds: tuple[str, ...]
    every_s: float | None = None  # None: due on every run
    crawl: dict = field(default_factory=dict)  # [crawl] settings overridden for this source

    def crawl_config(self, base: CrawlConfig) -> CrawlConfig:
        return dataclasses.replace(base, **self.crawl)


def load_jobs(path: str) -> list[Source]:
    """Read a jobs file; unknown keys, wrong types, duplicate names and empty seeds are ConfigErrors."""
    data = read_toml(path, "jobs file")
    unknown = sorted(set(data) - {"source"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; a jobs file holds [[source]] tables")
    tables = data.get("source", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: no [[source]] table; each needs name and seeds")
    sources: list[Source] = []
    for i, t in enumerate(tables, 1):
        where = f"{path} [[source]] #{i}"
        if not isinstance(t, dict):
            raise ConfigError(f"{where}: expected a table")
        t = dict(t)
        name, seeds, every = t.pop("name", None), t.pop("seeds", None), t.pop("every", None)
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: name must be a non-empty string")
        where = f"{path} [[source]] {name!r}"
        if isinstance(seeds, str):
            seeds = [seeds]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, str) and s.strip() for s in seeds):
            raise ConfigError(f"{where}: seeds must be a non-empty list of URLs or paths")
        if every is not None and not isinstance(every, str):
            raise ConfigError(f"{where}: every must be a string like \"24h\"")
        overrides = dataclasses.asdict(from_dict(CrawlConfig, t, where))
        overrides = {k: v for k, v in overrides.items() if k in t}
        if any(s.name == name for s in sources):
            raise ConfigError(f"{where}: two sources are named {name!r}")
        sources.append(Source(name, tuple(seeds), parse_interval(every, where) if every else None, overrides))
    return sources


@dataclass(frozen=True)
class JobResult:
    """What happened to one source in one run."""

    name: str
    status: str  # ok | failed | not_due
    fetched: int = 0
    new: int = 0
    changed: int = 0
    errors: int = 0
    pages_total: int = 0
    elapsed_s: float = 0.0
    error: str = ""
    last_success: str = ""  # ISO time (UTC) of the last success before this run
    next_due: str = ""  # for not_due sources


@dataclass(frozen=True)
class JobsReport:
    """The whole run: each source, the index build, and the exit code it maps to."""

    sources: tuple[JobResult, ...]
    index: dict | None = None  # the IndexReport, or None when nothing was crawled
    index_error: str = ""
    elapsed_s: float = 0.0

    @property
    def exit_code(self) -> int:
        ran = [s for s in self.sources if s.status != "not_due"]
        failed = [s for s in ran if s.status == "failed"]
        if not failed and not self.index_error:
            return EXIT_OK
        if len(failed) == len(ran) or self.index_error:
            return EXIT_ERROR
        return EXIT_PARTIAL

    def summary(self) -> str:
        counts = {k: sum(1 for s in self.sources if s.status == k) for k in ("ok", "failed", "not_due")}
        idx = (f"index: {self.index['pages']} pages, {self.index['chunks']} chunks (+{self.index['added']} "
               f"-{self.index['removed']})" if self.index else
               f"index failed: {self.index_error}" if self.index_error else "index: not rebuilt")
        fetched = sum(s.fetched for s in self.sources)
        return (f"jobs: {counts['ok']} ok, {counts['failed']} failed, {counts['not_due']} not due; "
                f"{fetched} pages fetched; {idx}; {self.elapsed_s:.1f}s")

    def to_dict(self) -> dict:
        return {"sources": [dataclasses.asdict(s) for s in self.sources], "index": self.index,
                "index_error": self.index_error, "elapsed_s": self.elapsed_s, "exit_code": self.exit_code,
                "summary": self.summary()}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def last_successes(engine, sources: list[Source]) -> dict[str, dt.datetime | None]:
    if not os.path.exists(engine.store_path):
        return {s.name: None for s in sources}
    with CrawlStore(engine.store_path, read_only=True) as store:
        return {s.name: store.last_job_success(s.name) for s in sources}


def run_jobs(engine, sources: list[Source], due: bool = False, progress: Callable[[dict], None] | None = None,
             now: dt.datetime | None = None) -> JobsReport:
    """Crawl each (due) source, then build one incremental index generation.

    `progress(event)` gets {"source", "stage": "crawl", "counts"} while crawling and
    {"stage": "index", "done", "total"} while embedding. Raises JobsLocked when another run holds
    the lock; a failing source does not stop the others."""
    os.makedirs(engine.data_dir, exist_ok=True)
    lock = FileLock(os.path.join(engine.data_dir, "jobs.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise JobsLocked(f"another `fathom run` is running on {engine.data_dir} (lock {lock.lock_file}); "
                         f"try again when it has finished") from None
    try:
        return _run_locked(engine, sources, due, progress, now or _utcnow())
    finally:
        lock.release()


def _run_locked(engine, sources, due, progress, now) -> JobsReport:
    t0 = time.monotonic()
    emit = progress or (lambda event: None)
    last = last_successes(engine, sources)
    results: list[JobResult] = []
    started_at: dict[str, dt.datetime] = {}
    for src in sources:
        prev = last.get(src.name)
        prev_s = prev.isoformat(timespec="seconds") if prev else ""
        if due and src.every_s is not None and prev is not None and \
                (now - prev).total_seconds() < src.every_s:
            nxt = prev + dt.timedelta(seconds=src.every_s)
            results.append(JobResult(src.name, "not_due", last_success=prev_s,
                                     next_due=nxt.isoformat(timespec="seconds")))
            continue
        started_at[src.name] = _utcnow()
        s0 = time.monotonic()
        emit({"source": src.name, "stage": "crawl", "counts": {}})
        try:
            report = engine.crawl(list(src.seeds), progress=lambda c, n=src.name: emit(
                {"source": n, "stage": "crawl", "counts": c}), crawl_config=src.crawl_config(engine.config.crawl))
        except FathomError as exc:
            results.append(JobResult(src.name, "failed", elapsed_s=round(time.monotonic() - s0, 3),
                                     error=str(exc), last_success=prev_s))
            continue
        results.append(JobResult(src.name, "ok", fetched=report.fetched, new=report.new, changed=report.changed,
                                 errors=report.errors, pages_total=report.pages_total,
                                 elapsed_s=round(time.monotonic() - s0, 3), last_success=prev_s))
    index = None
    index_error = ""
    if any(r.status == "ok" for r in results):
        emit({"stage": "index", "done": 0, "total": 0})
        try:
            rep = engine.index(progress=lambda done, total, started: emit(
                {"stage": "index", "done": done, "total": total,
                 "rate": done / max(time.monotonic() - started, 1e-9)}))
            index = dataclasses.asdict(rep)
        except FathomError as exc:
            index_error = str(exc)
    # a source succeeds when its crawl did and the index that followed was built
    if started_at:
        _record(engine, [(r.name, started_at[r.name], r.status == "ok" and not index_error, dataclasses.asdict(r))
                         for r in results if r.name in started_at])
    report = JobsReport(tuple(results), index, index_error, round(time.monotonic() - t0, 3))
    emit({"stage": "done", "summary": report.summary(), "exit_code": report.exit_code})
    return report


def _record(engine, rows: list[tuple]) -> None:
    """Write the job outcomes; a reader of the store in this process (the web UI) can hold it for
    a moment, so a refused open is retried for a few seconds."""
    for attempt in range(20):
        try:
            with CrawlStore(engine.store_path) as store:
                for row in rows:
                    store.record_job(*row)
            return
        except (StoreError, duckdb.Error):
            if attempt == 19:
                raise
            time.sleep(0.25)


def load_and_run(engine, path: str, due: bool = False, progress=None) -> JobsReport:
    """`fathom run` and `fathom serve --jobs`: read the jobs file and run it."""
    return run_jobs(engine, load_jobs(path), due=due, progress=progress)


__all__ = ["EXIT_ERROR", "EXIT_LOCKED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "JobResult", "JobsReport",
           "Source", "load_and_run", "load_jobs", "run_jobs"]
