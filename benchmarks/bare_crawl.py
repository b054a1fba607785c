"""Baseline crawler for benchmarks/e2e.py: a bare Scrapy spider that only fetches pages.

Reads {"seeds", "out_dir", "settings"} as JSON on stdin, follows links that stay on the
seeds' hosts and path prefixes, writes each response body to out_dir, and prints
{"fetched", "elapsed_s"} as JSON. No extraction, no store: the floor Fathom's crawl sits on.

With "revisit": {url: {header: value}} instead of seeds, it only requests those URLs with those
headers (conditional GETs) and counts the answers: the floor of a recrawl (benchmarks/crawl.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import sys
import time
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import TextResponse


class FetchSpider(scrapy.Spider):
    name = "bare"

    def __init__(self, seeds: list[str], out_dir: str, revisit: dict | None = None, **kw):
        super().__init__(**kw)
        self.seeds = seeds
        self.revisit = revisit or {}
        self.out_dir = out_dir
        parts = [urlsplit(s) for s in seeds]
        self.hosts = {p.netloc for p in parts}
        self.prefixes = tuple(posixpath.dirname(p.path).rstrip("/") + "/" for p in parts)
        self.fetched = 0

    async def start(self):
        for url, headers in self.revisit.items():
            yield scrapy.Request(url, self.revisited, headers=headers, meta={"handle_httpstatus_list": [304]})
        for url in self.seeds:
            yield scrapy.Request(url, self.parse)  # filtered like links, so a seed is fetched once

    def revisited(self, response):
        self.fetched += 1
        if response.status == 200:
            with open(os.path.join(self.out_dir, hashlib.sha1(response.url.encode()).hexdigest()), "wb") as f:
                f.write(response.body)

    def parse(self, response):
        name = hashlib.sha1(response.url.encode()).hexdigest() + ".html"
        with open(os.path.join(self.out_dir, name), "wb") as f:
            f.write(response.body)
        self.fetched += 1
        if not isinstance(response, TextResponse):
            return
        for href in response.css("a::attr(href)").getall():
            parts = urlsplit(response.urljoin(href))
            if parts.netloc in self.hosts and parts.path.startswith(self.prefixes):
                yield response.follow(parts.geturl(), self.parse)


def main() -> None:
    args = json.loads(sys.stdin.read())
    started = time.monotonic()
    process = CrawlerProcess(settings=args["settings"])
    crawler = process.create_crawler(FetchSpider)
    process.crawl(crawler, seeds=args.get("seeds", []), out_dir=args["out_dir"], revisit=args.get("revisit"))
    process.start()
    print(json.dumps({"fetched": crawler.spider.fetched, "elapsed_s": round(time.monotonic() - started, 3)}))


if __name__ == "__main__":
    main()
