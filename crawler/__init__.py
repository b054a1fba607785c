"""Crawler: a polite Scrapy crawler that stores clean page text in DuckDB."""
from core.errors import FathomError
from crawler.types import CrawlReport, Page

__all__ = ["CrawlReport", "FathomError", "Page"]
