"""Open an index generation for reading, checked against its manifest, falling back to the
previous kept generation when the current one is damaged."""
from __future__ import annotations

import os

from core.errors import IndexCorrupt, IndexMismatch
from indexer.build import read_chunks
from indexer.chunking import Chunk
from indexer.embedding import vector_space
from indexer.generations import current_generation, generations
from indexer.lexical import SCHEMA_VERSION, TEXT_FIELDS, LexicalIndex
from indexer.manifest import REBUILD_HINT, IndexManifest, read_manifest, verify_files
from indexer.page_shape import prose_share
from indexer.pages import PAGE_DIR, PageIndex
from indexer.vectors import load_hnsw


class HybridIndex:
    """The loaded index: tantivy searcher, hnswlib graph and chunk table of one generation.

    `note` is set when this is not the current generation (it was damaged), for callers to
    show beside their results."""

    def __init__(self, directory: str, manifest: IndexManifest, lexical: LexicalIndex, dense,
                 chunks: list[Chunk], note: str = ""):
        self.directory = directory
        self.manifest = manifest
        self.lexical = lexical
        self.dense = dense
        self.chunks = {c.chunk_id: c for c in chunks}
        self.note = note
        # page-level BM25 (None in generations built before it) and each page's chunks in order
        self.pages: PageIndex | None = None
        page_dir = os.path.join(directory, PAGE_DIR)
        if os.path.isdir(page_dir):
            self.pages = PageIndex(page_dir)
        self.page_chunks: dict[str, list[int]] = {}
        for c in sorted(chunks, key=lambda c: c.chunk_id):
            self.page_chunks.setdefault(c.url, []).append(c.chunk_id)

    @classmethod
    def open(cls, root: str, embedder_name: str | None = None, embedder_dim: int | None = None,
             verify: bool | str = True, threads: int = 2, fallback: bool = True) -> "HybridIndex":
        """Load the current generation. An embedder of another vector space (see
        `vector_space`) or dimension than the caller uses raises IndexMismatch. Missing or damaged files raise IndexCorrupt naming the file, unless
        `fallback` and an earlier kept generation loads: that one is returned with a `note`.

        `verify`: True or "quick" checks sizes and hashes only files modified since the build
        (see verify_files), "full" hashes every file, False checks nothing."""
        current = current_generation(root)
        try:
            return cls.open_directory(current, embedder_name, embedder_dim, verify, threads)
        except IndexCorrupt as damage:
            if not fallback:
                raise
            for older in reversed(generations(root)):
                if older >= current:
                    continue
                try:
                    idx = cls.open_directory(older, embedder_name, embedder_dim, verify, threads)
                except (IndexCorrupt, IndexMismatch):
                    continue
                idx.note = (f"index generation {os.path.basename(current)} is damaged ({damage}); "
                            f"serving the previous generation {os.path.basename(older)}")
                return idx
            raise IndexCorrupt(f"{damage} (no earlier generation is usable)") from None

    @classmethod
    def open_directory(cls, directory: str, embedder_name: str | None = None, embedder_dim: int | None = None,
                       verify: bool | str = True, threads: int = 2) -> "HybridIndex":
        """Load the generation in `directory` (see `open`; no fallback)."""
        manifest = read_manifest(directory)
        if embedder_name is not None and vector_space(manifest.embedder) != vector_space(embedder_name):
            raise IndexMismatch(f"index in {directory} was built with embedder {manifest.embedder!r} but "
                                f"{embedder_name!r} is configured; run `fathom index --rebuild`")
        if embedder_dim is not None and manifest.embedder_dim != embedder_dim:
            raise IndexMismatch(f"index vectors have dimension {manifest.embedder_dim}, the embedder "
                                f"gives {embedder_dim}; run `fathom index --rebuild`")
        if manifest.tantivy_schema_version != SCHEMA_VERSION:
            raise IndexMismatch(f"index schema version {manifest.tantivy_schema_version} differs from "
                                f"{SCHEMA_VERSION}; run `fathom index --rebuild`")
        if verify:
            verify_files(directory, manifest, full=verify == "full")
        lexical = LexicalIndex(os.path.join(directory, "tantivy"))
        try:
            dense = load_hnsw(directory, manifest.embedder_dim, manifest.compression_level,
                              manifest.ef_search, threads)
        except (OSError, MemoryError) as exc:  # hnswlib / filesystem edge
            raise IndexCorrupt(f"cannot load the dense index in {directory}: {exc}; {REBUILD_HINT}") from None
        chunks = read_chunks(directory)
        if len(chunks) != manifest.chunks or dense.get_current_count() != manifest.chunks \
                or lexical.num_docs != manifest.chunks:
            raise IndexCorrupt(f"index in {directory} is inconsistent: manifest says {manifest.chunks} "
                               f"chunks, chunk table {len(chunks)}, hnsw {dense.get_current_count()}, "
                               f"tantivy {lexical.num_docs}; {REBUILD_HINT}")
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

    def prose_share(self, url: str) -> tuple[float, int]:
        """(share of page `url`'s words in sentences, words counted): see indexer.page_shape."""
        cache = self.__dict__.setdefault("_prose", {})
        if url not in cache:
            cache[url] = prose_share(self.page_text(url))
        return cache[url]

    def page_text(self, url: str) -> str:
        """The text of every chunk of page `url`, in chunk order ("" for an unknown page)."""
        if getattr(self, "_by_url", None) is None:
            by_url: dict[str, list[Chunk]] = {}
            for c in self.chunks.values():
                by_url.setdefault(c.url, []).append(c)
            self._by_url = by_url
        return "\n\n".join(c.text for c in sorted(self._by_url.get(url, []), key=lambda c: c.chunk_id))
