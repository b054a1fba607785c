"""Item pipelines: dedup and the transactional write into the crawl store."""
from __future__ import annotations

from crawler.spider import PageItem


class StorePipeline:
    """Writes each PageItem into the DuckDB store; exact duplicates become aliases."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item):
        if not isinstance(item, PageItem):
            return item
        spider = self.crawler.spider
        store = spider.store
        url = item["url"]
        if item["fetched_url"] != url:
            store.add_alias(item["fetched_url"], url, "canonical")
        owner = store.hash_owner(item["content_hash"], url)
        if owner is not None:
            store.add_alias(url, owner, "duplicate")
            spider.skipped["duplicate"] += 1
            store.log_fetch(spider.run_id, item["fetched_url"], item["status"], item["size_bytes"],
                            item["elapsed_ms"], "skipped", "duplicate")
            return item
        outcome = store.upsert_page(
            url=url, title=item["title"], text=item["text"], headings=item["headings"], lang=item["lang"],
            content_hash=item["content_hash"], etag=item["etag"], last_modified=item["last_modified"],
            status=item["status"], size_bytes=item["size_bytes"])
        spider.counts[outcome] += 1
        store.log_fetch(spider.run_id, item["fetched_url"], item["status"], item["size_bytes"],
                        item["elapsed_ms"], outcome)
        return item
