"""The one exception tree of Fathom.

It lives in the bottom layer (core), below crawler, so every layer can raise and catch it::

    FathomError
    ├── ConfigError        a setting is unknown, mistyped or out of range
    ├── CrawlError         a crawl could not run at all (bad seed, store locked)
    │   └── InvalidURL     a URL cannot be parsed (bad port, broken IPv6 host; also a ValueError)
    ├── StoreError         the crawl store (DuckDB) is missing or unreadable
    ├── IndexProblem       base of index problems
    │   ├── IndexNotFound  no index has been built in this data directory
    │   ├── IndexMismatch  the index was built with other settings than asked for
    │   ├── IndexCorrupt   a file of the index is missing or damaged
    │   ├── IndexLocked    another writer holds the index lock
    │   └── ExportInvalid  an export (OpenSearch bulk body) does not fit its mapping
    ├── ModelUnavailable   a model file or package is missing or fails its checksum
    ├── QueryError         a question, query or filter cannot be handled (also a ValueError)
    ├── WriteError         the data directory cannot be written (disk full, read-only)
    └── JobsLocked         another `fathom run` is running on this data directory
"""
from __future__ import annotations


class FathomError(Exception):
    """Base of every error Fathom raises on purpose; the message says what to do."""


class ConfigError(FathomError):
    """A configuration key is unknown, has the wrong type, or is out of range."""


class CrawlError(FathomError):
    """A crawl could not be started or failed as a whole."""


class InvalidURL(CrawlError, ValueError):
    """A URL cannot be parsed: a port that is not a number in 0-65535, a broken IPv6 host."""


class StoreError(FathomError):
    """The crawl store is missing or cannot be read."""


class IndexProblem(FathomError):
    """Base of index errors."""


class IndexNotFound(IndexProblem):
    """No index exists in the data directory yet."""


class IndexMismatch(IndexProblem):
    """The index on disk was built with different settings (embedder, dimension, format)."""


class IndexCorrupt(IndexProblem):
    """A file of the index is missing, truncated or fails its checksum."""


class IndexLocked(IndexProblem):
    """Another process is writing the index."""


class ExportInvalid(IndexProblem):
    """An exported bulk body does not fit the index mapping it was written for."""


class ModelUnavailable(FathomError):
    """A model is not installed, not assembled, or fails its checksum."""


class QueryError(FathomError, ValueError):
    """A query, question or filter cannot be processed (also a ValueError, which it replaces
    at the edges where the filters and query parsing raised one)."""


class WriteError(FathomError):
    """Fathom could not write to its data directory (disk full, read-only, no permission);
    what was stored before is unchanged."""


class JobsLocked(FathomError):
    """Another `fathom run` holds the batch-job lock of this data directory."""
