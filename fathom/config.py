"""The whole configuration: TOML tables [crawl], [index], [retrieve], [answer] read into
frozen dataclasses. Defaults live in the dataclasses; configs/default.toml mirrors them."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field

from crawler.config import CrawlConfig, from_dict
from core.errors import ConfigError
from indexer.config import IndexConfig
from retriever.config import RetrieveConfig
from synthesizer.config import AnswerConfig

_SECTIONS = {"crawl": CrawlConfig, "index": IndexConfig, "retrieve": RetrieveConfig, "answer": AnswerConfig}


@dataclass(frozen=True)
class Config:
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieve: RetrieveConfig = field(default_factory=RetrieveConfig)
    answer: AnswerConfig = field(default_factory=AnswerConfig)


def read_toml(path: str, what: str) -> dict:
    """The parsed TOML file at `path`; a missing or malformed file is a ConfigError naming it."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_config(path: str | None) -> Config:
    """Read a TOML config; unknown tables or keys and wrong types raise ConfigError naming them."""
    if path is None:
        return Config()
    data = read_toml(path, "config file")
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)}; known: {', '.join(_SECTIONS)}")
    return Config(**{name: from_dict(cls, data.get(name, {}), f"{path} [{name}]")
                     for name, cls in _SECTIONS.items()})
