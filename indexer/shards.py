"""Sharded indexes: pages split by a stable hash of their canonical URL into N shards, each an
ordinary index root (generations, CURRENT, its own writer LOCK) under `ROOT/shard-NNN/`, and a
top-level `ROOT/shards.json` naming the shard count and the hash function.

A page's shard depends on its URL alone, so a changed page is rebuilt into the same shard and
never sits in two; shards can be built on different machines from the same crawl stores
(`build_shards(..., only=[i])`). Search over shards is retriever/sharded.py."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from core.errors import IndexCorrupt, IndexMismatch, IndexNotFound
from indexer.build import EmbeddingCache, IndexReport, _progress, build_index
from indexer.config import IndexConfig
from indexer.embedding import Embedder

SHARDS_FILE = "shards.json"
HASH_NAME = "sha256(url)[:8] big-endian mod N"
SHARDS_FORMAT = 1


def shard_of(url: str, shards: int) -> int:
    """The shard of canonical `url` among `shards`: the first 8 bytes of its SHA-256 as a
    big-endian integer, modulo the count. Stable across processes, machines and Python versions."""
    return int.from_bytes(hashlib.sha256(url.encode("utf-8")).digest()[:8], "big") % shards


def shard_dir(root: str, i: int) -> str:
    return os.path.join(root, f"shard-{i:03d}")


@dataclass(frozen=True)
class ShardManifest:
    """What `ROOT/shards.json` records."""

    format_version: int
    shards: int
    hash: str
    dirs: tuple[str, ...]


def read_shard_manifest(root: str) -> ShardManifest | None:
    """The top-level shard manifest under `root`, or None when the index is not sharded."""
    path = os.path.join(root, SHARDS_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        manifest = ShardManifest(data["format_version"], data["shards"], data["hash"], tuple(data["dirs"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorrupt(f"{path} is damaged ({exc}); rebuild with `fathom index --shards N`") from None
    if manifest.format_version != SHARDS_FORMAT or manifest.hash != HASH_NAME:
        raise IndexMismatch(f"{path}: shard format {manifest.format_version} with hash {manifest.hash!r} is not "
                            f"this version's ({SHARDS_FORMAT}, {HASH_NAME!r}); rebuild with `fathom index --shards N`")
    if len(manifest.dirs) != manifest.shards:
        raise IndexCorrupt(f"{path} names {len(manifest.dirs)} shard folders for {manifest.shards} shards")
    return manifest


def write_shard_manifest(root: str, shards: int) -> ShardManifest:
    """Write `shards.json` atomically (temp file, fsync, rename)."""
    manifest = ShardManifest(SHARDS_FORMAT, shards, HASH_NAME,
                             tuple(os.path.basename(shard_dir(root, i)) for i in range(shards)))
    tmp = os.path.join(root, SHARDS_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(manifest), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(root, SHARDS_FILE))
    return manifest


def remove_shard_manifest(root: str) -> None:
    """Make `root` an unsharded index again (the shard folders stay until removed by hand)."""
    path = os.path.join(root, SHARDS_FILE)
    if os.path.exists(path):
        os.remove(path)


def build_shards(pages: Callable[[], Iterable], root: str, config: IndexConfig, embedder: Embedder,
                 shards: int, only: Iterable[int] | None = None, progress=_progress,
                 embed=None) -> list[IndexReport]:
    """Build shards `only` (default: all) of `shards` under `root` from `pages()` (called once
    per shard; each shard keeps the pages that hash to it) and write `shards.json`.

    All shards share one embedding cache, `ROOT/embcache-MODEL.npz`, which is the file an
    unsharded build under `root` uses too: resharding embeds nothing already embedded."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    os.makedirs(root, exist_ok=True)
    cache = EmbeddingCache(root, embedder.name)
    reports = []
    keep: list[str] = []
    for i in range(shards) if only is None else only:
        if not 0 <= i < shards:
            raise ValueError(f"shard {i} is not among 0..{shards - 1}")
        mine = (p for p in pages() if shard_of(p.url, shards) == i)
        reports.append(build_index("", shard_dir(root, i), config, embedder, progress=progress, pages=mine,
                                   cache=cache, embed=embed))
        from indexer.build import read_chunks
        from indexer.generations import current_generation
        keep += [c.content_hash for c in read_chunks(current_generation(shard_dir(root, i)))]
    # keep what the other shards (and an unsharded index of the same pages) still use
    cache.save(keep + list(cache.vectors) if only is not None else keep)
    write_shard_manifest(root, shards)
    return reports


class ShardedIndex:
    """The loaded shards of a sharded index root, in shard order."""

    def __init__(self, root: str, manifest: ShardManifest, indexes: list):
        self.root = root
        self.manifest = manifest
        self.shards = indexes
        self.chunks = _ChunkView(indexes)

    def __len__(self) -> int:
        return sum(len(ix.chunks) for ix in self.shards)

    def document_frequency(self, stem: str) -> int:
        """Chunks holding `stem`, summed over the shards (each shard's tantivy count)."""
        return sum(ix.document_frequency(stem) for ix in self.shards)

    def page_text(self, url: str) -> str:
        """The text of page `url` from the shard that holds it ("" for an unknown page)."""
        return next((t for t in (ix.page_text(url) for ix in self.shards) if t), "")

    @property
    def note(self) -> str:
        """The fallback notes of shards whose current generation is damaged ('' when none is)."""
        return "; ".join(f"shard {i}: {ix.note}" for i, ix in enumerate(self.shards) if getattr(ix, "note", ""))

    @classmethod
    def open(cls, root: str, embedder_name: str | None = None, threads: int = 2) -> "ShardedIndex":
        from indexer.hybrid_index import HybridIndex
        manifest = read_shard_manifest(root)
        if manifest is None:
            raise IndexNotFound(f"no sharded index in {root}; run `fathom index --shards N`")
        indexes = []
        for name in manifest.dirs:
            indexes.append(HybridIndex.open(os.path.join(root, name), embedder_name, threads=threads))
        return cls(root, manifest, indexes)


class _ChunkView:
    """All shards' chunks for code that reads `index.chunks.values()` (chunk ids repeat across
    shards, so there is no lookup by id)."""

    def __init__(self, indexes: list):
        self._indexes = indexes

    def values(self):
        for index in self._indexes:
            yield from index.chunks.values()

    def __len__(self) -> int:
        return sum(len(index.chunks) for index in self._indexes)
