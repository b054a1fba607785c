"""The Scrapy spider: follows in-scope links and sitemaps, extracts pages, reports every skip,
and keeps its frontier in the store so a killed crawl resumes where it stopped."""
from __future__ import annotations

import hashlib
from collections import Counter
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.exceptions import (CannotResolveHostError, DownloadCancelledError, DownloadConnectionRefusedError,
                               DownloadFailedError, DownloadTimeoutError, IgnoreRequest, ResponseDataLossError)
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import (ConnectionDone, ConnectionLost, ConnectionRefusedError, DNSLookupError,
                                    TCPTimedOutError, TimeoutError)
from twisted.web._newclient import ResponseFailed

from crawler.dates import http_date_iso
from crawler.extract import extract_html
from crawler.items import PageItem
from crawler.lang import detect_language
from crawler.localfiles import file_seed_pages
from crawler.minhash import signature
from crawler.simhash import simhash
from crawler.sitemaps import sitemap_entries
from crawler.store import CrawlStore, WriteBatch
from crawler.traps import TrapGuard
from crawler.urls import Scope, normalize_url

HTML_TYPES = (b"text/html", b"application/xhtml+xml")
_FAILURE_REASONS = (
    ((DownloadCancelledError,), "too_large"),  # Scrapy cancels a download only past DOWNLOAD_MAXSIZE
    ((DownloadTimeoutError, TimeoutError, TCPTimedOutError), "timeout"),
    ((DNSLookupError, CannotResolveHostError, ConnectionRefusedError, DownloadConnectionRefusedError),
     "connection_failed"),
    ((ConnectionLost, ConnectionDone, ResponseFailed, DownloadFailedError, ResponseDataLossError),
     "connection_lost"),
)


FLUSH_ROWS = 256  # fetch-log rows that make a write batch go to the store at once
FLUSH_AFTER_S = 0.2  # otherwise a batch waits at most this long
MAX_LINKS_KEPT = 2000  # out-links recorded per page (crawler.store `links`)


class SiteSpider(scrapy.Spider):
    """Crawls `seeds` within `scope` into the store. `job` names the crawl for resuming: URLs
    an interrupted run of the same job finished are not fetched again, the rest are.

    What the store knows is read once into memory (`KnownPages`); writes go out in batches of
    one transaction each (`WriteBatch`), at most FLUSH_AFTER_S after the fetch they record, so
    a kill -9 loses at most that much work, which the next run fetches again."""

    name = "fathom"
    # 304 (conditional GET) and gone pages reach parse() instead of being filtered out
    custom_settings = {"HTTPERROR_ALLOWED_CODES": [304, 404, 410]}

    def __init__(self, seeds: list[str], store_path: str, max_pages: int, scope: Scope, job: str = "",
                 near_jaccard: float = 0.7, **kw):
        super().__init__(**kw)
        self.seeds = [normalize_url(s) for s in seeds]
        self.scope = scope
        self.max_pages = max_pages
        self.job = job
        self.store = CrawlStore(store_path)
        self.run_id = self.store.start_run(self.seeds, job)
        self.near_jaccard = near_jaccard  # MinHash/LSH threshold of near-duplicates; 0: SimHash only
        self.known = self.store.known_pages(near_jaccard)
        # out-links of stored pages that lead to no stored page (refused by max_pages, failed, out of
        # an earlier scope): an unchanged page yields these, as its parse would; and the live pages
        # whose links were never recorded (stored by an older Fathom): fetched in full once
        self.unfollowed = self.store.unfollowed_links()
        self.unrecorded = self.store.pages_without_links()
        self.batch = WriteBatch(self.run_id, job)
        self._flush_call = None
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.scheduled: set[str] = set()  # URLs requested, or known to be fetched, in this crawl job
        self.refused: set[str] = set()  # URLs counted once in `skipped` without being requested
        self.stored: set[str] = set()  # canonical URLs written to the store by this run
        self.unsaved: list[tuple[str, int]] = []  # (url, depth) scheduled, not yet in the frontier
        self.store_path = store_path
        self.shared = None  # crawler.distributed.SharedCrawl when the frontier is in Redis
        self._heartbeat = None

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.max_depth = crawler.settings.getint("DEPTH_LIMIT")
        spider.traps = TrapGuard(crawler.settings.getint("FATHOM_MAX_QUERY_VARIANTS"))
        spider.follow_sitemaps = crawler.settings.getbool("FATHOM_SITEMAPS")
        spider.max_sitemap_bytes = crawler.settings.getint("DOWNLOAD_MAXSIZE")
        crawler.signals.connect(spider.robots_parsed, signal=signals.robots_parsed)
        crawler.signals.connect(spider.request_dropped, signal=signals.request_dropped)
        crawler.signals.connect(spider.spider_error, signal=signals.spider_error)
        frontier = crawler.settings.get("FATHOM_FRONTIER")
        if frontier:
            from crawler.distributed import SharedCrawl, worker_id
            spider.shared = SharedCrawl(frontier, crawler.settings.get("FATHOM_JOB"), worker_id(spider.store_path),
                                        crawler.settings.getint("FATHOM_NEAR_DUPLICATE_BITS"))
            crawler.signals.connect(spider.spider_idle, signal=signals.spider_idle)
        return spider

    async def start(self):
        done, pending = self.store.frontier(self.job)
        self.scheduled |= done
        if self.shared is not None:
            from twisted.internet.task import LoopingCall
            self.shared.beat()
            self._heartbeat = LoopingCall(self.shared.beat)
            self._heartbeat.start(self.shared.ttl / 3, now=False)
            for url, depth in self.shared.reclaim(include_own=True):  # taken by this worker before a kill
                yield self._rerequest(url, depth)
        if self.follow_sitemaps:
            for scheme, netloc in dict.fromkeys(urlsplit(s)[:2] for s in self.seeds):
                if scheme in ("http", "https"):
                    yield self._sitemap_request(f"{scheme}://{netloc}/sitemap.xml")
        # Known pages and aliases are revisited too: a 304 page yields no links to find them by.
        known = [(u, 0) for u in self.known.live_urls() + self.store.alias_urls()]
        seeds = []
        for s in self.seeds:  # a local directory stands for the HTML files under it
            files = file_seed_pages(s)
            seeds += [(s, 0)] if files is None else [(f, 0) for f in files]
        todo = seeds + [(u, d) for u, d in pending + known if self.scope.allows(u)]
        for url, depth in todo:
            req = self._request(url, depth)
            if req is not None:
                yield req

    def _refuse(self, url: str, reason: str) -> None:
        """Count `url` as not fetched for `reason` (once per run), with a fetch-log row."""
        if url not in self.refused:
            self.refused.add(url)
            self.skipped[reason] += 1
            self.batch.fetched(url, 0, 0, 0.0, "not_fetched", reason, done=False)
            self._flush_soon()

    def _request(self, url: str, depth: int, lastmod: str = "") -> scrapy.Request | None:
        if url in self.scheduled:
            return None
        if self.traps.is_trap(url):
            return self._refuse(url, "trap")
        if self.max_depth and depth > self.max_depth:
            return self._refuse(url, "max_depth")
        if len(self.scheduled) >= self.max_pages:
            return self._refuse(url, "max_pages")
        self.scheduled.add(url)
        self.unsaved.append((url, depth))
        headers = {}
        known = self.known.live(url) if url not in self.unrecorded else None
        if known is not None and known.etag:
            headers["If-None-Match"] = known.etag
        if known is not None and known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        return scrapy.Request(url, headers=headers, callback=self.parse, errback=self.on_error,
                              meta={"depth": depth, "fathom_url": url, "fathom_lastmod": lastmod})

    def _follow_stored(self, url: str, depth: int) -> list[scrapy.Request]:
        """Requests for the recorded links of unchanged `url` that lead to no stored page."""
        reqs = (self._request(link, depth + 1) for link in self.unfollowed.get(url, ()) if self.scope.allows(link))
        return [r for r in reqs if r is not None]

    def _rerequest(self, url: str, depth: int) -> scrapy.Request:
        """A request for `url` that passes the shared seen-set: it was taken from the shared
        queue by a worker that died before committing its outcome."""
        self.scheduled.add(url)
        self.unsaved.append((url, depth))
        return scrapy.Request(url, callback=self.parse, errback=self.on_error, dont_filter=True,
                              meta={"depth": depth, "fathom_url": url, "fathom_lastmod": ""})

    def spider_idle(self) -> None:
        """Distributed crawl: stay open while other workers may still queue links, take over
        the requests of workers that died, and close when the shared job has no work left."""
        from scrapy.exceptions import DontCloseSpider
        from twisted.internet import reactor

        self.flush()
        again = self.shared.reclaim(include_own=True)  # idle: this worker's own leftovers are orphans
        for url, depth in again:
            self.crawler.engine.crawl(self._rerequest(url, depth))
        if again or self.shared.busy():
            # Scrapy polls an idle scheduler only every 5 s (engine heartbeat); ask sooner
            slot = getattr(self.crawler.engine, "_slot", None)
            if slot is not None:
                reactor.callLater(0.05, slot.nextcall.schedule)
            raise DontCloseSpider

    def _on_scope_host(self, url: str) -> bool:
        link = _normalized(url)
        return bool(link) and urlsplit(link).netloc in self.scope.hosts

    def _sitemap_request(self, url: str) -> scrapy.Request:
        return scrapy.Request(url, callback=self.parse_sitemap, errback=self.sitemap_failed)

    def robots_parsed(self, robotparser, request) -> None:
        """Queue the sitemaps a robots.txt names on the crawl's hosts (Protego parser)."""
        if not self.follow_sitemaps:
            return
        for url in robotparser.rp.sitemaps:
            if self._on_scope_host(url):
                self.crawler.engine.crawl(self._sitemap_request(url))

    def parse_sitemap(self, response):
        if response.status != 200:
            return
        pages, children = sitemap_entries(response.body, self.max_sitemap_bytes)
        for url in children:
            if self._on_scope_host(url):
                yield self._sitemap_request(url)
        for url, lastmod in pages:
            link = _normalized(url)
            if link and self.scope.allows(link):
                req = self._request(link, 1, lastmod)
                if req is not None:
                    yield req

    def sitemap_failed(self, failure) -> None:
        """A missing or broken sitemap is no error: links still lead to the pages."""

    def parse(self, response):
        url = response.meta["fathom_url"]
        elapsed_ms = 1000 * response.meta.get("download_latency", 0.0)
        self.counts["fetched"] += 1
        etag = (response.headers.get(b"ETag") or b"").decode("latin-1") or None
        last_modified = (response.headers.get(b"Last-Modified") or b"").decode("latin-1") or None
        if response.status == 304:
            self.batch.touch(url, etag, last_modified)
            self.known.update_validators(url, etag, last_modified)
            self.stored.add(url)
            self.counts["unchanged"] += 1
            follow = self._follow_stored(url, response.meta.get("depth", 0))  # saved with the record below
            self.record(url, 304, 0, elapsed_ms, "unchanged", "not_modified")
            yield from follow
            return
        if response.status in (404, 410):
            if self.known.tombstone(url):
                self.batch.tombstone(url, response.status)
                self.counts["deleted"] += 1
            else:
                self.counts["errors"] += 1  # a broken link to a page never stored
            self.skipped[f"http_{response.status}"] += 1
            self.record(url, response.status, 0, elapsed_ms, "gone", f"http_{response.status}")
            return
        ctype = response.headers.get(b"Content-Type", b"text/html").split(b";")[0].strip().lower()
        body = response.body
        if ctype not in HTML_TYPES or not isinstance(response, scrapy.http.TextResponse):
            self.skip(url, response.status, len(body), elapsed_ms, "not_html")
            return
        if b"\x00" in body[:4096]:
            self.skip(url, response.status, len(body), elapsed_ms, "binary")
            return
        final_url = normalize_url(response.url)
        self.scheduled.add(final_url)  # a redirect target is not fetched again
        if final_url != url and not self.scope.allows(final_url):
            self.skip(url, response.status, len(body), elapsed_ms, "redirect_out_of_scope")
            return
        body_hash = hashlib.sha256(body).hexdigest()
        known = self.known.live(url)
        if known is not None and known.body_hash == body_hash and final_url == url and url not in self.unrecorded:
            # the same bytes as stored: unchanged without extraction (servers without validators, files)
            self.batch.touch(url, etag, last_modified)
            self.known.update_validators(url, etag, last_modified)
            self.stored.add(url)
            self.counts["unchanged"] += 1
            follow = self._follow_stored(url, response.meta.get("depth", 0))
            self.record(url, response.status, len(body), elapsed_ms, "unchanged", "same_body")
            yield from follow
            return
        text = decode_body(response)
        self.counts["extracted"] += 1
        ext = extract_html(text, response.url)
        canonical = _normalized(ext.canonical) or final_url  # links come absolute
        if not self.scope.allows(canonical):
            canonical = final_url
        if ext.text.strip():
            self.scheduled.add(canonical)  # a page claims its canonical URL: never fetched after this
        depth = response.meta.get("depth", 0)
        links = list(dict.fromkeys(filter(None, map(_normalized, ext.links))))
        self.batch.links(url, links[:MAX_LINKS_KEPT])  # all of them, so a wider scope later finds them too
        if canonical != url:
            self.batch.links(canonical, links[:MAX_LINKS_KEPT])
        for link in links:
            if self.scope.allows(link):
                req = self._request(link, depth + 1)
                if req is not None:
                    yield req
        if not ext.text.strip():
            self.skip(url, response.status, len(body), elapsed_ms, "empty")
            return
        modified_at = ext.modified or response.meta.get("fathom_lastmod", "") or http_date_iso(last_modified)
        yield PageItem(url=canonical, fetched_url=url, title=ext.title, text=ext.text,
                       headings=list(ext.headings), lang=ext.lang or detect_language(ext.text),
                       content_hash=hashlib.sha256(ext.text.encode()).hexdigest(), simhash=simhash(ext.text),
                       minhash=signature(ext.text) if self.near_jaccard > 0 else b"",
                       body_hash=body_hash, etag=etag, last_modified=last_modified, modified_at=modified_at,
                       status=response.status, size_bytes=len(body), elapsed_ms=elapsed_ms)

    def record(self, url: str, status: int, size: int, elapsed_ms: float, outcome: str, reason: str = "") -> None:
        """Log the outcome of fetching `url`: it is done in the frontier, which also gets the
        URLs scheduled since the last record (among them every link found on `url`)."""
        self.batch.fetched(url, status, size, elapsed_ms, outcome, reason, scheduled=self.unsaved)
        self.unsaved = []
        self._flush_soon()

    def _flush_soon(self) -> None:
        if len(self.batch) >= FLUSH_ROWS:
            self.flush()
        elif self._flush_call is None:
            from twisted.internet import reactor
            self._flush_call = reactor.callLater(FLUSH_AFTER_S, self.flush)

    def flush(self) -> None:
        """Write the pending batch to the store in one transaction."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        batch, self.batch = self.batch, WriteBatch(self.run_id, self.job)
        self.store.write(batch)
        if self.shared is not None:
            self.shared.committed(batch.done)

    def skip(self, url: str, status: int, size: int, elapsed_ms: float, reason: str) -> None:
        self.skipped[reason] += 1
        self.record(url, status, size, elapsed_ms, "skipped", reason)

    def request_dropped(self, request) -> None:
        """The scheduler drops a request whose URL was already fetched in this crawl, which
        for a redirect means a loop (its target is in its own chain) or an alias of a page
        reached by another way ("canonical")."""
        url = request.meta.get("fathom_url")
        if url is None:
            return
        target = normalize_url(request.url)
        chain = [normalize_url(u) for u in request.meta.get("redirect_urls", ())]
        if target in chain:
            return self.skip(url, 0, 0, 0.0, "redirect_loop")
        if target != url:
            self.batch.alias(url, target, "redirect")
        elif self.shared is not None:
            return self.skip(url, 0, 0, 0.0, "other_worker")  # in the shared seen-set: another process has it
        self.skip(url, 0, 0, 0.0, "canonical")

    def on_error(self, failure) -> None:
        request = failure.request
        url = request.meta.get("fathom_url", request.url)
        status = 0
        if failure.check(HttpError):
            status = failure.value.response.status
            reason = f"http_{status}"
        elif failure.check(IgnoreRequest):
            msg = str(failure.value).lower()
            reason = "robots" if "robots" in msg else "redirect_loop" if "redirect" in msg else "ignored"
        else:
            reason = next((r for types, r in _FAILURE_REASONS if failure.check(*types)),
                          type(failure.value).__name__)
        if reason != "robots":
            self.counts["errors"] += 1
        self.skipped[reason] += 1
        self.record(url, status, 0, 0.0, "error", reason)

    def spider_error(self, failure, response, spider) -> None:
        """A bug in handling one response is counted for that URL, and the crawl goes on."""
        url = response.meta.get("fathom_url")
        if url is None:
            return
        self.counts["errors"] += 1
        self.skipped["spider_error"] += 1
        self.record(url, response.status, len(response.body), 0.0, "error", "spider_error")

    def closed(self, reason: str) -> None:
        self.flush()
        if reason == "finished":
            self.store.clear_frontier(self.job)
        if self.shared is not None:
            if self._heartbeat is not None and self._heartbeat.running:
                self._heartbeat.stop()
            if reason == "finished" and not self.shared.busy():
                self.shared.finish()
            self.shared.leave()
        self.store.close()


def _normalized(url: str) -> str:
    """normalize_url, or "" for a URL it cannot parse (a bad port, a broken IPv6 host)."""
    try:
        return normalize_url(url) if url else ""
    except ValueError:
        return ""


def decode_body(response) -> str:
    """The response's text, also when the page lies about or omits its charset. Bytes that are
    valid UTF-8 and not all ASCII are almost never another charset, so UTF-8 is tried first;
    otherwise Scrapy's choice (Content-Type charset, BOM, <meta>, guess) is used unless it had to
    replace characters (cp1252 sent as utf-8), and then charset-normalizer guesses."""
    body = response.body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):
        text = "\ufffd"
    if "\ufffd" not in text:
        return text
    return body.decode(guess_charset(body), errors="replace")


def guess_charset(body: bytes) -> str:
    """charset-normalizer's guess, except that windows-1252 (the web's fallback, WHATWG) wins
    among guesses as plausible as the best: on short pages it cannot tell cp1252 from cp1257
    or cp775, but Western text sent undeclared is far more often cp1252."""
    from charset_normalizer import from_bytes
    matches = list(from_bytes(body[:1_000_000]))
    if not matches:
        return "cp1252"
    best = min(m.chaos for m in matches)
    for m in matches:
        if m.chaos <= best + 0.05 and "cp1252" in (m.encoding, *m.could_be_from_charset):
            return "cp1252"
    return min(matches, key=lambda m: m.chaos).encoding
