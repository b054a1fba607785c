"""Crawl settings, and the strict TOML-section reader every layer's config uses."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from core.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build frozen dataclass `cls` from `data`; unknown keys or wrong types raise ConfigError.

    `where` names the file and section for the message, e.g. "configs/x.toml [crawl]".
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = {}
    for key, value in data.items():
        values[key] = _check_type(value, hints[key], f"{where} {key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item_type, *_rest) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_check_type(v, item_type, where) for v in value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int or hint is bool or hint is str:
        if type(value) is not hint:
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value


@dataclass(frozen=True)
class CrawlConfig:
    """How to crawl: scope, politeness and limits."""

    max_pages: int = 1000
    max_depth: int = 20
    max_page_bytes: int = 10_000_000
    concurrency: int = 8
    concurrency_per_host: int = 8
    download_delay_s: float = 0.0
    autothrottle: bool = False
    obey_robots: bool = True
    user_agent: str = "FathomBot/0.1 (+https://github.com/fathom; local private search)"
    timeout_s: float = 30.0
    retries: int = 2
    retry_backoff_s: float = 1.0
    max_retry_wait_s: float = 60.0
    max_crawl_delay_s: float = 30.0
    max_redirects: int = 5
    max_query_variants: int = 50
    near_duplicate_bits: int = 3
    near_duplicate_jaccard: float = 0.7
    sitemaps: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    path_prefixes: tuple[str, ...] = ()
    frontier: str = ""  # redis://HOST:PORT/DB: share the frontier with other crawler processes (scrapy-redis)

    def __post_init__(self) -> None:
        if self.max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        if self.concurrency < 1 or self.concurrency_per_host < 1:
            raise ValueError("concurrency must be at least 1")
        if min(self.download_delay_s, self.retry_backoff_s, self.max_retry_wait_s, self.max_crawl_delay_s) < 0:
            raise ValueError("delays and waits must not be negative")
        if self.max_query_variants < 1:
            raise ValueError("max_query_variants must be at least 1")
        if not 0 <= self.near_duplicate_jaccard <= 1:
            raise ValueError("near_duplicate_jaccard must be between 0 and 1 (0 leaves only SimHash)")
        if self.frontier and not self.frontier.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"frontier must be a redis://, rediss:// or unix:// URL, got {self.frontier!r}")
        if self.frontier and self.autothrottle:
            raise ValueError("autothrottle cannot be used with a shared frontier: the processes pace each host "
                             "together in Redis at a fixed delay (download_delay_s or robots.txt Crawl-delay); "
                             "set autothrottle = false")
        if self.near_duplicate_bits > 64:
            raise ValueError("near_duplicate_bits must be at most 64 (negative turns near-duplicate detection off)")
