"""Retriever: hybrid BM25 + dense search with rank fusion over the indexer's HybridIndex."""
from retriever.config import RetrieveConfig
from retriever.hybrid import Hit, HybridRetriever, SearchResult

__all__ = ["Hit", "HybridRetriever", "RetrieveConfig", "SearchResult"]
