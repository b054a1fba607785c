"""Retriever: hybrid BM25 + dense search with rank fusion over the indexer's HybridIndex."""
from retriever.config import RetrieveConfig
from retriever.hybrid import Filters, Hit, HybridRetriever, SearchResult

__all__ = ["Filters", "Hit", "HybridRetriever", "RetrieveConfig", "SearchResult"]
