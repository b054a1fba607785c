"""Item pipelines: duplicates become aliases, everything else is written to the crawl store."""
from __future__ import annotations

from scrapy.exceptions import DropItem

from crawler.items import PageItem
from crawler.known import Known


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
        if fetched_url != url:
            spider.batch.alias(fetched_url, url, "canonical")
        if owner is not None:
            spider.batch.alias(url, owner, reason)
        if reason is not None:  # the aliases and this log line go out in the same batch
            spider.skip(fetched_url, item["status"], item["size_bytes"], item["elapsed_ms"], reason)
            raise DropItem(f"{reason}: {fetched_url}", log_level="DEBUG")
        return item

    def _duplicate(self, item: PageItem) -> tuple[str | None, str | None]:
        """(reason the page is not stored, page it is an alias of), or (None, None) to store it."""
        known, url = self.crawler.spider.known, item["url"]
        if url in self.crawler.spider.stored:
            return "canonical", None  # the canonical alias is recorded anyway
        owner = known.hash_owner(item["content_hash"], url)
        if owner is not None:
            return "duplicate", owner
        if (self.near_bits >= 0 or item.get("minhash")) and known.live(url) is None:
            owner = known.near_owner(item["simhash"], url, self.near_bits, item.get("minhash"))
            if owner is not None:
                return "near_duplicate", owner
        shared = self.crawler.spider.shared
        if shared is not None:  # decided across all crawler processes of the job (Redis)
            return shared.claim(url, item["fetched_url"], item["content_hash"], item["simhash"],
                                known.live(url) is None)
        return None, None


class StorePipeline:
    """Stores each PageItem (through the spider's write batch: the page and its fetch-log line
    commit together) and counts it new, changed or unchanged."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item):
        if not isinstance(item, PageItem):
            return item
        spider = self.crawler.spider
        exists = spider.known.get(item["url"]) is not None  # a row, live or a tombstone
        outcome = spider.known.put(item["url"], Known(item["content_hash"], item["body_hash"], item["etag"],
                                                      item["last_modified"], False, item["simhash"],
                                                      item.get("minhash") or None))
        spider.batch.page(outcome, exists, url=item["url"], title=item["title"], text=item["text"],
                          headings=item["headings"], lang=item["lang"], content_hash=item["content_hash"],
                          body_hash=item["body_hash"], etag=item["etag"], last_modified=item["last_modified"],
                          modified_at=item["modified_at"], status=item["status"], size_bytes=item["size_bytes"],
                          simhash=item["simhash"], minhash=item.get("minhash") or None)
        spider.record(item["fetched_url"], item["status"], item["size_bytes"], item["elapsed_ms"], outcome)
        spider.stored.add(item["url"])
        spider.counts[outcome] += 1
        return item
