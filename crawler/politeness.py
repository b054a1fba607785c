"""Downloader middlewares that keep the crawler polite: robots.txt Crawl-delay, and retries
that wait (Retry-After, else exponential backoff) instead of hammering a struggling server."""
from __future__ import annotations

import email.utils
import time

from scrapy import signals
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import sleep
from scrapy.utils.response import response_status_message


class CrawlDelayMiddleware:
    """Applies a host's robots.txt Crawl-delay (capped at FATHOM_MAX_CRAWL_DELAY) to its download
    slot when it is longer than DOWNLOAD_DELAY. AutoThrottle leaves such a slot alone.

    Ordered after RobotsTxtMiddleware, whose robots_parsed signal sets the delay before the
    host's first request goes out."""

    def __init__(self, crawler):
        if not crawler.settings.getbool("ROBOTSTXT_OBEY"):
            raise NotConfigured
        self.crawler = crawler
        self.user_agent = crawler.settings.get("ROBOTSTXT_USER_AGENT") or crawler.settings["USER_AGENT"]
        self.max_delay = crawler.settings.getfloat("FATHOM_MAX_CRAWL_DELAY")
        self.delayed: set[str] = set()  # slot keys that have a Crawl-delay
        crawler.signals.connect(self.robots_parsed, signal=signals.robots_parsed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def robots_parsed(self, robotparser, request) -> None:
        delay = min(robotparser.crawl_delay(self.user_agent) or 0.0, self.max_delay)
        if delay <= self.crawler.settings.getfloat("DOWNLOAD_DELAY"):
            return
        downloader = self.crawler.engine.downloader
        key = downloader.get_slot_key(request)
        self.delayed.add(key)
        # slots are created lazily and garbage-collected when idle: set both the live slot and
        # the settings a recreated slot starts from
        downloader.per_slot_settings.setdefault(key, {}).update(delay=delay, jitter=0.0)
        if key in downloader.slots:
            downloader.slots[key].delay = delay
            downloader.slots[key].jitter = 0.0

    def process_request(self, request):
        if self.crawler.engine.downloader.get_slot_key(request) in self.delayed:
            request.meta["autothrottle_dont_adjust_delay"] = True


RETRY_WAIT_STAT = "fathom/retry_wait_s"


class BackoffRetryMiddleware(RetryMiddleware):
    """RetryMiddleware that waits before each retry: as long as a 429/503 response's
    Retry-After asks (not retrying when that exceeds FATHOM_RETRY_MAX_WAIT), otherwise
    FATHOM_RETRY_BACKOFF seconds doubled for every earlier retry, capped at the same maximum."""

    def __init__(self, settings):
        super().__init__(settings)
        self.backoff = settings.getfloat("FATHOM_RETRY_BACKOFF")
        self.max_wait = settings.getfloat("FATHOM_RETRY_MAX_WAIT")

    async def process_response(self, request, response):
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        wait = self._backoff(request)
        if response.status in (429, 503) and b"Retry-After" in response.headers:
            wait = retry_after_seconds(response.headers[b"Retry-After"].decode("latin-1"))
            if wait is None or wait > self.max_wait:
                return response
        retry = self._retry(request, response_status_message(response.status))
        if retry is None:
            return response
        await self._wait(wait)
        return retry

    async def process_exception(self, request, exception):
        if not isinstance(exception, self.exceptions_to_retry) or request.meta.get("dont_retry", False):
            return None
        retry = self._retry(request, exception)
        if retry is not None:
            await self._wait(self._backoff(request))
        return retry

    async def _wait(self, seconds: float) -> None:
        """Sleep before a retry, adding the wait to the crawl's `retry_wait_s` (CrawlReport)."""
        self.crawler.stats.inc_value(RETRY_WAIT_STAT, seconds)
        await sleep(seconds)

    def _backoff(self, request) -> float:
        return min(self.backoff * 2 ** request.meta.get("retry_times", 0), self.max_wait)


def retry_after_seconds(value: str) -> float | None:
    """Seconds a Retry-After header value asks to wait (delta-seconds or an HTTP date)."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
