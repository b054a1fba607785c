"""Crawler: a polite Scrapy crawler that stores clean page text in DuckDB."""
from crawler.errors import FathomError
from crawler.types import CrawlReport, Page

__all__ = ["CrawlReport", "FathomError", "Page"]
