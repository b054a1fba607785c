"""Build an index generation from the crawl store: chunk, embed (with a cache keyed by
chunk content hash), write tantivy and hnswlib, write the manifest, switch CURRENT."""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import functools
import json
import lzma
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from core.errors import FathomError, IndexProblem, WriteError
from crawler.store import CrawlStore
from indexer.chunking import Chunk, ChunkSpec, chunk_hash, chunk_page
from indexer.config import IndexConfig
from indexer.embedding import Embedder
from indexer.generations import (WriterLock, current_generation, next_generation_number, prune,
                                 switch_current)
from indexer.lexical import SCHEMA_VERSION, write_lexical
from core.files import sha256_file
from indexer.manifest import FORMAT_VERSION, IndexManifest, read_manifest, verify_files, write_manifest
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

    def __init__(self, root: str, embedder_name: str, load: bool = True):
        self.path = os.path.join(root, f"embcache-{embedder_name}.npz")
        self.vectors: dict[str, np.ndarray] = {}
        if load and os.path.exists(self.path):
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
                progress=_progress, rebuild: bool = False, pages=None,
                cache: "EmbeddingCache | None" = None, embed=None) -> IndexReport:
    """Build a new generation under `root` from the store at `store_path` and make it current.

    The new generation is loaded back before CURRENT is switched to it, so a generation that
    does not load is never made current. `rebuild` trusts nothing on disk: it re-embeds every
    chunk (no embedding cache), ignores the previous generations, and afterwards deletes the
    older ones that fail their checksums. A write that fails (disk full, read-only directory)
    raises WriteError and leaves the current generation as it was.

    `pages` (an iterable of Page) replaces reading the store, e.g. one shard's pages of several
    stores; a `cache` passed in is shared with other builds and saved by the caller. `embed`
    (list of texts -> float32 array) replaces embedding in this process, e.g. by Ray Data."""
    started = time.monotonic()
    try:
        os.makedirs(root, exist_ok=True)
        with WriterLock(root):
            try:
                return _build_locked(store_path, root, config, embedder, progress, rebuild, started,
                                     pages, cache, embed)
            except OSError:
                prune(root, config.keep_generations, unfinished_only=True)
                raise
    except OSError as exc:  # filesystem edge: ENOSPC, EROFS, EACCES while writing
        raise WriteError(f"cannot write the index in {root}: {exc.strerror or exc}; free space or fix "
                         "permissions, then run `fathom index` again (the current index is unchanged)") from None


def _build_locked(store_path: str, root: str, config: IndexConfig, embedder: Embedder, progress,
                  rebuild: bool, started: float, pages, cache, embed) -> IndexReport:
    prune(root, config.keep_generations)
    old_hashes: set[str] = set()
    if not rebuild:
        try:
            old_hashes = {c.content_hash for c in read_chunks(current_generation(root))}
        except FathomError:
            pass  # no or a damaged current generation: everything counts as added
    spec = chunk_spec(config, embedder)
    chunks: list[Chunk] = []
    page_list = []
    source, pages = pages, 0
    with CrawlStore(store_path, read_only=True) if source is None else _nothing() as store:
        for page in store.pages() if source is None else source:
            pages += 1
            page_list.append(page)
            chunks.extend(chunk_page(page, spec, first_id=len(chunks)))
    own_cache = cache is None
    if own_cache:
        cache = EmbeddingCache(root, embedder.name, load=not rebuild)
    todo = [c for c in chunks if c.content_hash not in cache.vectors]
    # longest first in one order: each embedding batch holds texts of similar length (little padding)
    todo = sorted({c.content_hash: c for c in todo}.values(), key=lambda c: -len(c.embed_text()))
    batch = max(1, config.embed_batch_size) * 4
    t0 = time.monotonic()
    todo_left = todo
    if embed is not None and todo:
        vecs = embed([c.embed_text() for c in todo])
        for c, v in zip(todo, vecs):
            cache.vectors[c.content_hash] = np.asarray(v, np.float32)
        progress(len(todo), len(todo), t0)
        todo_left = []
    for i in range(0, len(todo_left), batch):
        part = todo_left[i:i + batch]
        vecs = embedder.embed_documents([c.embed_text() for c in part], config.embed_batch_size)
        for c, v in zip(part, vecs):
            cache.vectors[c.content_hash] = v
        progress(min(i + batch, len(todo_left)), len(todo_left), t0)
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
    files, sizes = {}, {}
    for dirpath, _, names in os.walk(tmp):
        for n in names:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, tmp)
            if not rel.startswith("tantivy/.tantivy") and not n.endswith(".lock"):
                files[rel] = sha256_file(full)
                sizes[rel] = os.path.getsize(full)
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
        build_s=round(time.monotonic() - started, 3), files=files, sizes=sizes)
    write_manifest(tmp, manifest)
    _fsync_tree(tmp)
    from indexer.hybrid_index import HybridIndex  # it imports this module
    try:  # hnswlib writes with an unchecked ofstream: a full disk shows only when loading back
        HybridIndex.open_directory(tmp, embedder.name, embedder.dim, verify=False, threads=config.threads)
    except IndexProblem as exc:
        raise OSError(errno.EIO, f"the new generation does not load back ({exc}); is the disk full?") from None
    os.rename(tmp, final)
    switch_current(root, final)
    if own_cache:
        try:
            cache.save([c.content_hash for c in chunks])
        except OSError:
            pass  # the cache only saves re-embedding next time; the new generation is complete
    prune(root, config.keep_generations)
    if rebuild:
        _drop_damaged(root, final)
    return IndexReport(pages=pages, chunks=len(chunks), added=len(new_hashes - old_hashes),
                       removed=len(old_hashes - new_hashes), embedded=len(todo),
                       elapsed_s=round(time.monotonic() - started, 3), generation=gen_no,
                       settings=manifest.settings())


def _drop_damaged(root: str, keep: str) -> None:
    """Delete generations other than `keep` whose files fail their checksums."""
    from indexer.generations import generations
    for gen in generations(root):
        if gen == keep:
            continue
        try:
            verify_files(gen, read_manifest(gen), full=True)
        except FathomError:
            shutil.rmtree(gen, ignore_errors=True)


@contextlib.contextmanager
def _nothing():
    yield None


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
