"""Item pipelines: duplicates become aliases, everything else is written to the crawl store."""
from __future__ import annotations

from scrapy.exceptions import DropItem

from crawler.items import PageItem


class DuplicatesPipeline:
    """Drops a page already stored by this crawl under its canonical URL ("canonical"), one
    whose text another live page has ("duplicate"), and a page new to the store whose SimHash
    is within FATHOM_NEAR_DUPLICATE_BITS of a live page's ("near_duplicate"; negative turns
    this off). Each is recorded as an alias of the page kept."""

    def __init__(self, crawler):
        self.crawler = crawler
        self.near_bits = crawler.settings.getint("FATHOM_NEAR_DUPLICATE_BITS")

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item):
        if not isinstance(item, PageItem):
            return item
        spider = self.crawler.spider
        url, fetched_url = item["url"], item["fetched_url"]
        reason, owner = self._duplicate(item)
        if reason is None and fetched_url == url:
            return item
        with spider.store.transaction():
            if fetched_url != url:
                spider.store.add_alias(fetched_url, url, "canonical")
            if owner is not None:
                spider.store.add_alias(url, owner, reason)
            if reason is not None:
                spider.skip(fetched_url, item["status"], item["size_bytes"], item["elapsed_ms"], reason)
        if reason is not None:
            raise DropItem(f"{reason}: {fetched_url}", log_level="DEBUG")
        return item

    def _duplicate(self, item: PageItem) -> tuple[str | None, str | None]:
        """(reason the page is not stored, page it is an alias of), or (None, None) to store it."""
        store, url = self.crawler.spider.store, item["url"]
        if url in self.crawler.spider.stored:
            return "canonical", None  # the canonical alias is recorded anyway
        owner = store.hash_owner(item["content_hash"], url)
        if owner is not None:
            return "duplicate", owner
        if self.near_bits >= 0 and store.known_hash(url) is None:
            owner = store.near_owner(item["simhash"], url, self.near_bits)
            if owner is not None:
                return "near_duplicate", owner
        return None, None


class StorePipeline:
    """Writes each PageItem into the DuckDB store and counts it new, changed or unchanged."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item):
        if not isinstance(item, PageItem):
            return item
        spider = self.crawler.spider
        with spider.store.transaction():  # the page and its fetch-log line commit together
            outcome = spider.store.upsert_page(
                url=item["url"], title=item["title"], text=item["text"], headings=item["headings"],
                lang=item["lang"], content_hash=item["content_hash"], etag=item["etag"],
                last_modified=item["last_modified"], status=item["status"], size_bytes=item["size_bytes"],
                simhash=item["simhash"])
            spider.record(item["fetched_url"], item["status"], item["size_bytes"], item["elapsed_ms"], outcome)
        spider.stored.add(item["url"])
        spider.counts[outcome] += 1
        return item
