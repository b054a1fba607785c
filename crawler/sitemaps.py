"""Sitemap reading: the page and child-sitemap URLs a sitemap (plain or gzipped) lists."""
from __future__ import annotations

import struct

from lxml import etree
from scrapy.utils.gz import gunzip
from scrapy.utils.sitemap import Sitemap

from crawler.dates import iso_date


def sitemap_entries(body: bytes, max_size: int) -> tuple[list[tuple[str, str]], list[str]]:
    """([(page URL, its <lastmod> as ISO 8601 or "")], [child sitemap URLs]) of a <urlset> or
    <sitemapindex> document; both empty for anything else, including broken XML or gzip, or
    gzip that inflates past `max_size`."""
    try:
        if body[:3] == b"\x1f\x8b\x08":
            body = gunzip(body, max_size=max_size)
        sitemap = Sitemap(body)
        entries = [(entry["loc"], iso_date(entry.get("lastmod"))) for entry in sitemap if entry.get("loc")]
    except (OSError, EOFError, ValueError, struct.error, StopIteration, etree.XMLSyntaxError):
        return [], []
    if sitemap.type == "urlset":
        return entries, []
    if sitemap.type == "sitemapindex":
        return [], [loc for loc, _ in entries]
    return [], []
