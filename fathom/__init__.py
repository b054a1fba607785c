"""Fathom: a private, local search and answer engine over the sites you crawl.

Every public type and the whole exception tree come from here::

    from fathom import Engine, Filters, SearchResult, Hit, Answer, Citation, Status, FathomError
"""
from core.errors import (ConfigError, CrawlError, ExportInvalid, FathomError, IndexCorrupt, IndexLocked, IndexMismatch,
                         IndexNotFound, IndexProblem, InvalidURL, JobsLocked, ModelUnavailable, QueryError,
                         StoreError, WriteError)
from crawler.config import CrawlConfig
from crawler.types import CrawlReport, Page
from fathom.config import Config, load_config
from fathom.engine import CrawlStatus, Engine, IndexStatus, Status
from fathom.jobs import JobResult, JobsReport, Source, load_jobs, run_jobs
from indexer.build import IndexReport
from indexer.config import IndexConfig
from retriever.config import RetrieveConfig
from retriever.evaluation import EvalResult
from retriever.hybrid import Filters, Hit, SearchResult
from synthesizer.config import AnswerConfig
from synthesizer.evaluation import AnswerEval
from synthesizer.types import Answer, Citation, SentenceSupport

__version__ = "0.1.0"
__all__ = ["Answer", "AnswerConfig", "AnswerEval", "Citation", "Config", "ConfigError", "CrawlConfig",
           "CrawlError", "CrawlReport", "CrawlStatus", "Engine", "EvalResult", "ExportInvalid", "FathomError", "Filters", "Hit",
           "IndexConfig", "IndexCorrupt", "IndexLocked", "IndexMismatch", "IndexNotFound", "IndexProblem",
           "IndexReport", "IndexStatus", "InvalidURL", "JobResult", "JobsLocked", "JobsReport", "ModelUnavailable", "Page",
           "QueryError", "RetrieveConfig", "SearchResult", "SentenceSupport", "Source", "Status", "StoreError",
           "WriteError",            "load_config", "load_jobs", "run_jobs"]
