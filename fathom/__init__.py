"""Fathom: a private, local search and answer engine over the sites you crawl."""
from core.errors import (ConfigError, CrawlError, FathomError, IndexCorrupt, IndexLocked, IndexMismatch,
                         IndexNotFound, IndexProblem, InvalidURL, ModelUnavailable, QueryError, StoreError, WriteError)
from fathom.config import Config, load_config
from fathom.engine import Engine

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "CrawlError", "Engine", "FathomError", "IndexCorrupt", "IndexLocked",
           "IndexMismatch", "IndexNotFound", "IndexProblem", "InvalidURL", "ModelUnavailable", "QueryError", "StoreError",
           "WriteError", "load_config"]
