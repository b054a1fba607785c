"""Baseline crawler for benchmarks/e2e.py: a bare Scrapy spider that only fetches pages.

Reads {"seeds", "out_dir", "settings"} as JSON on stdin, follows links that stay on the
seeds' hosts and path prefixes, writes each response body to out_dir, and prints
{"fetched", "elapsed_s"} as JSON. No extraction, no store: the floor Fathom's crawl sits on.
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

    def __init__(self, seeds: list[str], out_dir: str, **kw):
        super().__init__(**kw)
        self.seeds = seeds
        self.out_dir = out_dir
        parts = [urlsplit(s) for s in seeds]
        self.hosts = {p.netloc for p in parts}
        self.prefixes = tuple(posixpath.dirname(p.path).rstrip("/") + "/" for p in parts)
        self.fetched = 0

    async def start(self):
        for url in self.seeds:
            yield scrapy.Request(url, self.parse)  # filtered like links, so a seed is fetched once

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
    process.crawl(crawler, seeds=args["seeds"], out_dir=args["out_dir"])
    process.start()
    print(json.dumps({"fetched": crawler.spider.fetched, "elapsed_s": round(time.monotonic() - started, 3)}))


if __name__ == "__main__":
    main()
