"""Open the current index generation for reading, verifying it against its manifest."""
from __future__ import annotations

import os

from core.errors import IndexMismatch
from indexer.build import read_chunks
from indexer.chunking import Chunk
from indexer.generations import current_generation
from indexer.lexical import SCHEMA_VERSION, TEXT_FIELDS, LexicalIndex
from indexer.manifest import IndexManifest, read_manifest, verify_files
from indexer.vectors import load_hnsw


class HybridIndex:
    """The loaded index: tantivy searcher, hnswlib graph and chunk table of one generation."""

    def __init__(self, directory: str, manifest: IndexManifest, lexical: LexicalIndex, dense,
                 chunks: list[Chunk]):
        self.directory = directory
        self.manifest = manifest
        self.lexical = lexical
        self.dense = dense
        self.chunks = {c.chunk_id: c for c in chunks}

    @classmethod
    def open(cls, root: str, embedder_name: str | None = None, embedder_dim: int | None = None,
             verify: bool = True, threads: int = 2) -> "HybridIndex":
        """Load the current generation. A different embedder or dimension than the caller
        uses raises IndexMismatch; missing or damaged files raise IndexCorrupt."""
        directory = current_generation(root)
        manifest = read_manifest(directory)
        if embedder_name is not None and manifest.embedder != embedder_name:
            raise IndexMismatch(f"index in {root} was built with embedder {manifest.embedder!r} but "
                                f"{embedder_name!r} is configured; run `fathom index --rebuild`")
        if embedder_dim is not None and manifest.embedder_dim != embedder_dim:
            raise IndexMismatch(f"index vectors have dimension {manifest.embedder_dim}, the embedder "
                                f"gives {embedder_dim}; run `fathom index --rebuild`")
        if manifest.tantivy_schema_version != SCHEMA_VERSION:
            raise IndexMismatch(f"index schema version {manifest.tantivy_schema_version} differs from "
                                f"{SCHEMA_VERSION}; run `fathom index --rebuild`")
        if verify:
            verify_files(directory, manifest)
        lexical = LexicalIndex(os.path.join(directory, "tantivy"))
        dense = load_hnsw(directory, manifest.embedder_dim, manifest.compression_level,
                          manifest.ef_search, threads)
        chunks = read_chunks(directory)
        if len(chunks) != manifest.chunks or dense.get_current_count() != manifest.chunks \
                or lexical.num_docs != manifest.chunks:
            from core.errors import IndexCorrupt
            raise IndexCorrupt(f"index in {directory} is inconsistent: manifest says {manifest.chunks} "
                               f"chunks, chunk table {len(chunks)}, hnsw {dense.get_current_count()}, "
                               f"tantivy {lexical.num_docs}; run `fathom index --rebuild`")
        return cls(directory, manifest, lexical, dense, chunks)

    # --- read API for the layers above ------------------------------------------------
    def __len__(self) -> int:
        return len(self.chunks)

    def chunk(self, chunk_id: int) -> Chunk | None:
        """The chunk with this id, or None."""
        return self.chunks.get(chunk_id)

    def document_frequency(self, stem: str) -> int:
        """Chunks whose title, heading or body holds the English-stemmed lower-case term `stem`
        (tantivy's count for the field that holds it most often: a close lower bound)."""
        searcher = self.lexical.searcher
        return max(searcher.doc_freq(name, stem) for name in TEXT_FIELDS)

    def page_text(self, url: str) -> str:
        """The text of every chunk of page `url`, in chunk order ("" for an unknown page)."""
        if getattr(self, "_by_url", None) is None:
            by_url: dict[str, list[Chunk]] = {}
            for c in self.chunks.values():
                by_url.setdefault(c.url, []).append(c)
            self._by_url = by_url
        return "\n\n".join(c.text for c in sorted(self._by_url.get(url, []), key=lambda c: c.chunk_id))
