"""Run a crawl. `crawl()` starts a child process because Twisted's reactor cannot
restart inside one process; the child (`python -m crawler.run`) prints a JSON report.

A crawl job is named by a hash of its seeds; its frontier lives in the store until the
job finishes, so rerunning a killed crawl resumes it (see SiteSpider)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time

from crawler.config import CrawlConfig
from core.errors import CrawlError, FathomError, StoreError, WriteError
from crawler.localfiles import local_path, path_to_seed
from crawler.types import CrawlReport
from crawler.urls import Scope, normalize_url


def scrapy_settings(config: CrawlConfig) -> dict:
    """Scrapy settings for a crawl. Scheduler and dupefilter stay Scrapy's defaults, so a
    distributed pair (scrapy-redis) can replace them through SCHEDULER / DUPEFILTER_CLASS."""
    return {
        "BOT_NAME": "fathom",
        "USER_AGENT": config.user_agent,
        "ROBOTSTXT_OBEY": config.obey_robots,
        "CONCURRENT_REQUESTS": config.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": config.concurrency_per_host,
        "DOWNLOAD_DELAY": config.download_delay_s,
        "AUTOTHROTTLE_ENABLED": config.autothrottle,
        "DOWNLOAD_TIMEOUT": config.timeout_s,
        "DOWNLOAD_MAXSIZE": config.max_page_bytes,
        "DOWNLOAD_WARNSIZE": 0,
        "RETRY_TIMES": config.retries,
        "RETRY_GIVE_UP_LOG_LEVEL": "WARNING",  # the report counts each URL given up on
        "FATHOM_RETRY_BACKOFF": config.retry_backoff_s,
        "FATHOM_RETRY_MAX_WAIT": config.max_retry_wait_s,
        "FATHOM_MAX_CRAWL_DELAY": config.max_crawl_delay_s,
        "FATHOM_MAX_QUERY_VARIANTS": config.max_query_variants,
        "FATHOM_NEAR_DUPLICATE_BITS": config.near_duplicate_bits,
        "FATHOM_SITEMAPS": config.sitemaps,
        "ROBOTSTXT_PARSER": "scrapy.robotstxt.ProtegoRobotParser",  # the spider reads its Sitemap: lines
        "DOWNLOADER_MIDDLEWARES": {
            "crawler.localfiles.LocalFileMiddleware": 50,  # file:// seeds: 404, too_large, 304 by mtime
            "crawler.politeness.CrawlDelayMiddleware": 110,  # after RobotsTxtMiddleware (100)
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            "crawler.politeness.BackoffRetryMiddleware": 550,
        },
        "REDIRECT_MAX_TIMES": config.max_redirects,
        "DEPTH_LIMIT": config.max_depth,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,  # Scrapy >= 2.19 would otherwise open a control port
        "LOG_LEVEL": os.environ.get("FATHOM_CRAWL_LOG", "ERROR"),
        "ITEM_PIPELINES": {"crawler.pipelines.DuplicatesPipeline": 200, "crawler.pipelines.StorePipeline": 300},
        "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
        # Scrapy re-parses a generator callback's source for every response to warn about
        # `return value` (bound methods miss its weak-keyed cache): 1.4 ms a page, measured
        "WARN_ON_GENERATOR_RETURN_VALUE": False,
        # Scrapy starts CONCURRENT_ITEMS asyncio tasks for every response's output; the pipelines are
        # synchronous, so 100 (the default) only costs: 16 cut a 1,169-page 304 recrawl from 3.1 to 2.5 s
        "CONCURRENT_ITEMS": 16,
    }


def crawl(seeds: list[str], config: CrawlConfig, store_path: str,
          max_pages: int | None = None, progress=None) -> CrawlReport:
    """Crawl `seeds` into the store at `store_path` and return the report. A seed is an
    http(s) URL, a file:// URL, or a local path (a directory crawls the HTML files under it).
    `progress(counts)` is called about twice a second with the running counts (fetched, new, ...)."""
    if not seeds:
        raise CrawlError("no seed URL given")
    seeds = [path_to_seed(s) for s in seeds]
    for s in seeds:
        path = local_path(s)
        if path is not None and not os.path.exists(path):
            raise CrawlError(f"seed {s!r}: {path} does not exist")
        if path is None and not s.startswith(("http://", "https://")):
            raise CrawlError(f"seed {s!r} is not an http(s) URL, a file:// URL or an existing local path")
    for s in seeds:
        normalize_url(s)  # InvalidURL, in one line, for a seed with a bad port or host
    if max_pages is not None:
        config = dataclasses.replace(config, max_pages=max_pages)
    from crawler.store import CrawlStore
    with CrawlStore(store_path):  # fails here, in one line, when the store is locked or unwritable
        pass
    if config.frontier:
        from crawler.distributed import connect
        connect(config.frontier).close()  # a clear error now rather than a failed child process
    args = {"seeds": seeds, "store": os.path.abspath(store_path), "config": dataclasses.asdict(config)}
    proc = subprocess.Popen([sys.executable, "-m", "crawler.run"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    drain = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    drain.start()
    lines: list[str] = []
    try:
        proc.stdin.write(json.dumps(args))
        proc.stdin.close()
        for ln in proc.stdout:
            if ln.startswith('{"progress"'):
                if progress is not None:
                    progress(json.loads(ln)["progress"])
            elif ln.startswith("{"):
                lines.append(ln)
        proc.wait()
    finally:
        if proc.poll() is None:  # the caller gave up (an exception in `progress`): stop the child
            proc.terminate()
            proc.wait()
    drain.join()
    stderr = "".join(err)
    for line in stderr.splitlines():  # the child's own one-line error (see _main)
        if line.startswith(("core.errors.", _ERROR_PREFIX)):  # raised in the child, or in Scrapy's reactor
            if line.startswith("core.errors."):
                kind, _, message = line[len("core.errors."):].partition(": ")
            else:
                kind, _, message = line[len(_ERROR_PREFIX):].partition(" ")
            raise {"StoreError": StoreError, "WriteError": WriteError}.get(kind, CrawlError)(message)
    disk = [ln for ln in stderr.splitlines() if "No space left on device" in ln or "Read-only file system" in ln]
    if disk:  # DuckDB / filesystem edge, raised inside Scrapy's reactor
        why = "No space left on device" if "No space left" in disk[-1] else "Read-only file system"
        raise WriteError(f"cannot write the crawl store {store_path}: {why}; pages stored before are kept; "
                         "free space and run the crawl again to resume")
    if proc.returncode != 0 or not lines:
        tail = stderr.strip().splitlines()[-5:]
        raise CrawlError(f"crawl process failed (exit {proc.returncode}): {' | '.join(tail)}")
    if stderr.strip():
        sys.stderr.write(stderr)
    return CrawlReport(**json.loads(lines[-1]))


def job_name(seeds: list[str]) -> str:
    """The name of the crawl job for these (normalised) seeds."""
    return hashlib.sha256("\n".join(sorted(set(seeds))).encode()).hexdigest()[:16]


def _child() -> None:
    from scrapy.crawler import CrawlerProcess

    from crawler.politeness import RETRY_WAIT_STAT
    from crawler.spider import SiteSpider

    args = json.loads(sys.stdin.read())
    config = CrawlConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in args["config"].items()})
    seeds = [normalize_url(s) for s in args["seeds"]]
    scope = Scope.from_seeds(seeds, config.allowed_hosts, config.path_prefixes, config.include, config.exclude)
    started = time.monotonic()
    settings = scrapy_settings(config)
    if config.frontier:  # several processes share one frontier in Redis (crawler/distributed.py)
        from crawler.distributed import frontier_settings
        settings.update(frontier_settings(config.frontier, job_name(seeds)))
        settings["DOWNLOADER_MIDDLEWARES"] = {**settings["DOWNLOADER_MIDDLEWARES"],
                                              "crawler.distributed.SharedHostSlots": 950}
    process = CrawlerProcess(settings=settings)
    crawler = process.create_crawler(SiteSpider)
    process.crawl(crawler, seeds=seeds, store_path=args["store"], max_pages=config.max_pages, scope=scope,
                  job=job_name(seeds),
                  near_jaccard=config.near_duplicate_jaccard if config.near_duplicate_bits >= 0 else 0.0)
    from scrapy import signals
    from twisted.internet import task

    def tick() -> None:  # running counts for the parent's progress display
        sp = crawler.spider
        if sp is not None:
            print(json.dumps({"progress": dict(sp.counts) | {"skipped": sum(sp.skipped.values())}}), flush=True)
    ticker = task.LoopingCall(tick)

    def start_ticker() -> None:  # returns None: a Deferred returned here would hold up the engine start
        ticker.start(0.5, now=False)

    def stop_ticker() -> None:
        if ticker.running:
            ticker.stop()
    crawler.signals.connect(start_ticker, signal=signals.engine_started, weak=False)
    crawler.signals.connect(stop_ticker, signal=signals.engine_stopped, weak=False)
    process.start()
    spider = crawler.spider
    from crawler.store import CrawlStore
    c = spider.counts
    report = CrawlReport(run_id=spider.run_id, fetched=c["fetched"], new=c["new"], changed=c["changed"],
                         unchanged=c["unchanged"], deleted=c["deleted"], errors=c["errors"], extracted=c["extracted"],
                         skipped=dict(spider.skipped), elapsed_s=round(time.monotonic() - started, 3),
                         retry_wait_s=round(crawler.stats.get_value(RETRY_WAIT_STAT, 0.0), 3))
    with CrawlStore(args["store"]) as store:
        report = dataclasses.replace(report, pages_total=store.stats()["pages"])
        store.end_run(report.run_id, dataclasses.asdict(report))
    print(json.dumps(dataclasses.asdict(report)), flush=True)


_ERROR_PREFIX = "fathom-crawl-error: "


def _main() -> None:
    """The child's entry: a Fathom error or a failed write becomes one line for the parent."""
    try:
        _child()
    except FathomError as exc:
        sys.stderr.write(f"{_ERROR_PREFIX}{type(exc).__name__} {exc}\n")
        sys.exit(1)
    except OSError as exc:  # filesystem edge: disk full, read-only store
        sys.stderr.write(f"{_ERROR_PREFIX}WriteError cannot write the crawl store: {exc.strerror or exc}; "
                         "pages stored before are kept; free space and run the crawl again to resume\n")
        sys.exit(1)


if __name__ == "__main__":
    _main()
