"""Indexer: chunks pages and builds the hybrid tantivy + hnswlib index with a manifest."""
from indexer.build import IndexReport, build_index
from indexer.chunking import Chunk
from indexer.config import IndexConfig
from indexer.hybrid_index import HybridIndex
from indexer.manifest import IndexManifest

__all__ = ["Chunk", "HybridIndex", "IndexConfig", "IndexManifest", "IndexReport", "build_index"]
