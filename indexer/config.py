"""Index settings (the [index] table of the config)."""
from __future__ import annotations

from dataclasses import dataclass

from indexer.vectors import LEVELS


@dataclass(frozen=True)
class IndexConfig:
    """How to chunk, embed and index; all of it is recorded in the manifest."""

    embedder: str = "all-MiniLM-L6-v2-int8-160"
    embed_batch_size: int = 32
    threads: int = 2
    chunk_unit: str = "tokens"  # "tokens" (of the embedder's own tokenizer) or "words"
    chunk_words: int = 150
    overlap_words: int = 30
    min_words: int = 40
    chunk_tokens: int = 200
    overlap_tokens: int = 40
    min_tokens: int = 50
    hnsw_m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    compression_level: int = 4
    keep_generations: int = 2

    def __post_init__(self) -> None:
        if self.compression_level not in LEVELS:
            raise ValueError(f"compression_level must be one of {LEVELS}")
        if self.chunk_unit not in ("words", "tokens"):
            raise ValueError("chunk_unit must be 'words' or 'tokens'")
        if not 0 <= self.overlap_words < self.chunk_words:
            raise ValueError("overlap_words must be >= 0 and below chunk_words")
        if not 0 <= self.overlap_tokens < self.chunk_tokens:
            raise ValueError("overlap_tokens must be >= 0 and below chunk_tokens")
        if self.hnsw_m < 2 or self.ef_construction < 1 or self.ef_search < 1:
            raise ValueError("hnsw_m must be >= 2 and ef_construction, ef_search >= 1")
        if self.keep_generations < 1:
            raise ValueError("keep_generations must be at least 1")
