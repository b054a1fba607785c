"""Build an index generation from the crawl store: chunk, embed (with a cache keyed by
chunk content hash), write tantivy and hnswlib, write the manifest, switch CURRENT."""
from __future__ import annotations

import datetime as dt
import functools
import json
import lzma
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from crawler.store import CrawlStore
from indexer.chunking import Chunk, ChunkSpec, chunk_hash, chunk_page
from indexer.config import IndexConfig
from indexer.embedding import Embedder
from indexer.generations import (WriterLock, current_generation, next_generation_number, prune,
                                 switch_current)
from indexer.lexical import SCHEMA_VERSION, write_lexical
from core.files import sha256_file
from indexer.manifest import FORMAT_VERSION, IndexManifest, write_manifest
from indexer.pages import PAGE_DIR, write_pages
from indexer.vectors import build_hnsw, save_hnsw

CHUNK_TABLE = "chunks.jsonl.xz"


@dataclass(frozen=True)
class IndexReport:
    """What one `fathom index` run did."""

    pages: int
    chunks: int
    added: int
    removed: int
    embedded: int  # chunks that had to be embedded (not found in the cache)
    elapsed_s: float
    generation: int
    settings: dict


class EmbeddingCache:
    """float32 vectors keyed by chunk content hash, one .npz per embedder, replaced atomically."""

    def __init__(self, root: str, embedder_name: str):
        self.path = os.path.join(root, f"embcache-{embedder_name}.npz")
        self.vectors: dict[str, np.ndarray] = {}
        if os.path.exists(self.path):
            try:
                data = np.load(self.path, allow_pickle=False)
                self.vectors = dict(zip(data["hashes"].tolist(), data["vectors"]))
            except (OSError, ValueError, KeyError):
                self.vectors = {}  # a damaged cache only costs re-embedding

    def save(self, keep: list[str]) -> None:
        hashes = [h for h in dict.fromkeys(keep) if h in self.vectors]
        vecs = np.stack([self.vectors[h] for h in hashes]) if hashes else np.zeros((0, 0), np.float32)
        tmp = self.path + ".tmp.npz"
        np.savez(tmp, hashes=np.array(hashes, dtype="U64"), vectors=vecs)
        os.replace(tmp, self.path)


def chunk_spec(config: IndexConfig, embedder: Embedder) -> ChunkSpec:
    """The chunking spec of `config`: in words, or in tokens of `embedder`'s tokenizer, where a
    code block or table stays whole up to what the embedder reads (its limit less 32 tokens for
    the special tokens and the title/heading prefix)."""
    if config.chunk_unit == "words":
        return ChunkSpec(config.chunk_words, config.overlap_words, config.min_words)
    weigh = functools.lru_cache(maxsize=1 << 18)(embedder.count_tokens)
    return ChunkSpec(config.chunk_tokens, config.overlap_tokens, config.min_tokens,
                     hard_limit=max(config.chunk_tokens, embedder.max_tokens - 32), weigh=weigh)


def _progress(done: int, total: int, started: float) -> None:
    if total and sys.stderr.isatty():
        rate = done / max(time.monotonic() - started, 1e-9)
        sys.stderr.write(f"\rembedding {done}/{total} chunks ({rate:.1f}/s)")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def build_index(store_path: str, root: str, config: IndexConfig, embedder: Embedder,
                progress=_progress) -> IndexReport:
    """Build a new generation under `root` from the store at `store_path` and make it current."""
    started = time.monotonic()
    os.makedirs(root, exist_ok=True)
    with WriterLock(root):
        prune(root, config.keep_generations)
        old_hashes: set[str] = set()
        try:
            prev = current_generation(root)
            old_hashes = {c.content_hash for c in read_chunks(prev)}
        except Exception:
            prev = None
        spec = chunk_spec(config, embedder)
        chunks: list[Chunk] = []
        page_list = []
        with CrawlStore(store_path, read_only=True) as store:
            pages = 0
            for page in store.pages():
                pages += 1
                page_list.append(page)
                chunks.extend(chunk_page(page, spec, first_id=len(chunks)))
        cache = EmbeddingCache(root, embedder.name)
        todo = [c for c in chunks if c.content_hash not in cache.vectors]
        # longest first in one order: each embedding batch holds texts of similar length (little padding)
        todo = sorted({c.content_hash: c for c in todo}.values(), key=lambda c: -len(c.embed_text()))
        batch = max(1, config.embed_batch_size) * 4
        t0 = time.monotonic()
        for i in range(0, len(todo), batch):
            part = todo[i:i + batch]
            vecs = embedder.embed_documents([c.embed_text() for c in part], config.embed_batch_size)
            for c, v in zip(part, vecs):
                cache.vectors[c.content_hash] = v
            progress(min(i + batch, len(todo)), len(todo), t0)
        gen_no = next_generation_number(root)
        final = os.path.join(root, f"gen-{gen_no:06d}")
        tmp = final + ".tmp"
        os.makedirs(os.path.join(tmp, "tantivy"))
        write_lexical(os.path.join(tmp, "tantivy"), chunks)
        write_pages(os.path.join(tmp, PAGE_DIR), page_list)
        vectors = (np.stack([cache.vectors[c.content_hash] for c in chunks]) if chunks
                   else np.zeros((0, embedder.dim), np.float32))
        ids = np.array([c.chunk_id for c in chunks], dtype=np.int64)
        hnsw = build_hnsw(vectors, ids, config.hnsw_m, config.ef_construction, config.threads)
        save_hnsw(hnsw, tmp, config.compression_level)
        write_chunks(tmp, chunks)
        files = {}
        for dirpath, _, names in os.walk(tmp):
            for n in names:
                full = os.path.join(dirpath, n)
                rel = os.path.relpath(full, tmp)
                if not rel.startswith("tantivy/.tantivy") and not n.endswith(".lock"):
                    files[rel] = sha256_file(full)
        new_hashes = {c.content_hash for c in chunks}
        manifest = IndexManifest(
            format_version=FORMAT_VERSION, generation=gen_no, embedder=embedder.name,
            embedder_dim=embedder.dim, embedder_checksum=embedder.checksum(),
            chunk_unit=config.chunk_unit, chunk_words=config.chunk_words, overlap_words=config.overlap_words,
            min_words=config.min_words, chunk_tokens=config.chunk_tokens, overlap_tokens=config.overlap_tokens,
            min_tokens=config.min_tokens, chunk_hard_limit=spec.block_limit,
            hnsw_m=config.hnsw_m, ef_construction=config.ef_construction, ef_search=config.ef_search,
            compression_level=config.compression_level, tantivy_schema_version=SCHEMA_VERSION,
            pages=pages, chunks=len(chunks),
            built_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            build_s=round(time.monotonic() - started, 3), files=files)
        write_manifest(tmp, manifest)
        _fsync_tree(tmp)
        os.rename(tmp, final)
        switch_current(root, final)
        cache.save([c.content_hash for c in chunks])
        prune(root, config.keep_generations)
    return IndexReport(pages=pages, chunks=len(chunks), added=len(new_hashes - old_hashes),
                       removed=len(old_hashes - new_hashes), embedded=len(todo),
                       elapsed_s=round(time.monotonic() - started, 3), generation=gen_no,
                       settings=manifest.settings())


def write_chunks(directory: str, chunks: list[Chunk]) -> None:
    """The chunk table, one JSON line per chunk, xz-compressed (72% of gzip's size on the
    PostgreSQL docs; reading it back takes 0.07 s). The content hash is left out (it is 64
    incompressible characters, a tenth of the table) and recomputed on read."""
    with lzma.open(os.path.join(directory, CHUNK_TABLE), "wt", encoding="utf-8", preset=6) as f:
        for c in chunks:
            row = asdict(c)
            del row["content_hash"]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_chunks(directory: str) -> list[Chunk]:
    from core.errors import IndexCorrupt
    path = os.path.join(directory, CHUNK_TABLE)
    try:
        with lzma.open(path, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        return [Chunk(**r, content_hash=chunk_hash(r["title"], r["heading"], r["text"])) for r in rows]
    except FileNotFoundError:
        raise IndexCorrupt(f"index file missing: {path}; rebuild with `fathom index --rebuild`") from None
    except (OSError, lzma.LZMAError, ValueError, TypeError, KeyError, EOFError) as exc:
        raise IndexCorrupt(f"index file damaged: {path} ({exc}); rebuild with `fathom index --rebuild`") from None


def _fsync_tree(top: str) -> None:
    for dirpath, _, names in os.walk(top):
        for n in names:
            fd = os.open(os.path.join(dirpath, n), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
