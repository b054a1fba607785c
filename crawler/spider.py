"""The Scrapy spider: follows in-scope links, extracts pages, reports every skip."""
from __future__ import annotations

import hashlib
from collections import Counter
from urllib.parse import urljoin

import scrapy
from scrapy.exceptions import IgnoreRequest
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import (ConnectionLost, ConnectionRefusedError, DNSLookupError,
                                    TCPTimedOutError, TimeoutError)
from twisted.web._newclient import ResponseFailed

from crawler.extract import extract_html
from crawler.store import CrawlStore
from crawler.urls import Scope, normalize_url

HTML_TYPES = (b"text/html", b"application/xhtml+xml")


class PageItem(dict):
    """A fetched, extracted page on its way to the store pipeline (a plain dict item)."""


class SiteSpider(scrapy.Spider):
    name = "fathom"
    # 304 (conditional GET) and gone pages reach parse() instead of being filtered out
    custom_settings = {"HTTPERROR_ALLOWED_CODES": [304, 404, 410]}

    def __init__(self, seeds: list[str], store_path: str, max_pages: int, scope: Scope, **kw):
        super().__init__(**kw)
        self.seeds = [normalize_url(s) for s in seeds]
        self.scope = scope
        self.max_pages = max_pages
        self.store = CrawlStore(store_path)
        self.run_id = self.store.start_run(self.seeds)
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.scheduled: set[str] = set()

    async def start(self):
        # Known pages are revisited too: a 304 page yields no links to rediscover them by.
        known = [u for u in self.store.page_hashes() if self.scope.allows(u)]
        for url in self.seeds + sorted(known):
            req = self._request(url, depth=0)
            if req is not None:
                yield req

    def _request(self, url: str, depth: int) -> scrapy.Request | None:
        if url in self.scheduled:
            return None
        if len(self.scheduled) >= self.max_pages:
            self.skipped["max_pages"] += 1
            return None
        self.scheduled.add(url)
        headers = {}
        etag, last_modified = self.store.validators(url)
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return scrapy.Request(url, headers=headers, callback=self.parse, errback=self.on_error,
                              meta={"depth": depth, "fathom_url": url}, dont_filter=False)

    def parse(self, response):
        url = response.meta["fathom_url"]
        elapsed_ms = 1000 * response.meta.get("download_latency", 0.0)
        self.counts["fetched"] += 1
        if response.status == 304:
            self.store.touch(url)
            self.store.log_fetch(self.run_id, url, 304, 0, elapsed_ms, "unchanged", "not_modified")
            self.counts["unchanged"] += 1
            return
        if response.status in (404, 410):
            if self.store.tombstone(url, response.status):
                self.counts["deleted"] += 1
            else:
                self.counts["errors"] += 1  # a broken link to a page never stored
            self.store.log_fetch(self.run_id, url, response.status, 0, elapsed_ms, "gone", f"http_{response.status}")
            self.skipped[f"http_{response.status}"] += 1
            return
        ctype = response.headers.get(b"Content-Type", b"text/html").split(b";")[0].strip().lower()
        body = response.body
        if ctype not in HTML_TYPES or not isinstance(response, scrapy.http.TextResponse):
            return self._skip(url, response.status, len(body), elapsed_ms, "not_html")
        if b"\x00" in body[:4096]:
            return self._skip(url, response.status, len(body), elapsed_ms, "binary")
        final_url = normalize_url(response.url)
        if final_url != url and not self.scope.allows(final_url):
            return self._skip(url, response.status, len(body), elapsed_ms, "redirect_out_of_scope")
        try:
            text = response.text
        except (UnicodeDecodeError, LookupError):
            text = body.decode("utf-8", errors="replace")
        ext = extract_html(text, response.url)
        depth = response.meta.get("depth", 0)
        for href in ext.links:
            link = normalize_url(urljoin(response.url, href))
            if self.scope.allows(link):
                req = self._request(link, depth + 1)
                if req is not None:
                    yield req
        if not ext.text.strip():
            return self._skip(url, response.status, len(body), elapsed_ms, "empty")
        canonical = normalize_url(urljoin(response.url, ext.canonical)) if ext.canonical else final_url
        if not self.scope.allows(canonical):
            canonical = final_url
        yield PageItem(url=canonical, fetched_url=url, title=ext.title, text=ext.text,
                       headings=list(ext.headings), lang=ext.lang,
                       content_hash=hashlib.sha256(ext.text.encode()).hexdigest(),
                       etag=(response.headers.get(b"ETag") or b"").decode("latin-1") or None,
                       last_modified=(response.headers.get(b"Last-Modified") or b"").decode("latin-1") or None,
                       status=response.status, size_bytes=len(body), elapsed_ms=elapsed_ms)

    def _skip(self, url: str, status: int, size: int, elapsed_ms: float, reason: str) -> None:
        self.skipped[reason] += 1
        self.store.log_fetch(self.run_id, url, status, size, elapsed_ms, "skipped", reason)

    def on_error(self, failure) -> None:
        request = failure.request
        url = request.meta.get("fathom_url", request.url)
        if failure.check(HttpError):
            status = failure.value.response.status
            reason = f"http_{status}"
        elif failure.check(IgnoreRequest):
            msg = str(failure.value).lower()
            reason = ("robots" if "robots" in msg else "too_large" if "size" in msg
                      else "redirect_loop" if "redirect" in msg else "ignored")
            status = 0
        elif failure.check(TimeoutError, TCPTimedOutError):
            reason, status = "timeout", 0
        elif failure.check(DNSLookupError, ConnectionRefusedError):
            reason, status = "connection_failed", 0
        elif failure.check(ConnectionLost, ResponseFailed):
            reason, status = "connection_lost", 0
        else:
            reason, status = type(failure.value).__name__, 0
        if reason != "robots":
            self.counts["errors"] += 1
        self.skipped[reason] += 1
        self.store.log_fetch(self.run_id, url, status, 0, 0.0, "error", reason)

    def closed(self, reason: str) -> None:
        self.store.close()
