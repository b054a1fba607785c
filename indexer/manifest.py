"""manifest.json: everything an index was built with, checked on every load."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from core.errors import IndexCorrupt
from core.files import sha256_file

FORMAT_VERSION = 3  # 2: chunk table without content hashes; 3: xz chunk table, xz vectors at level 4


@dataclass(frozen=True)
class IndexManifest:
    """Build settings and contents of one index generation."""

    format_version: int
    generation: int
    embedder: str
    embedder_dim: int
    embedder_checksum: str
    chunk_unit: str  # "words" or "tokens"; the sizes of the other unit are recorded but unused
    chunk_words: int
    overlap_words: int
    min_words: int
    chunk_tokens: int
    overlap_tokens: int
    min_tokens: int
    chunk_hard_limit: int  # a code block or table up to this many units is never split
    hnsw_m: int
    ef_construction: int
    ef_search: int
    compression_level: int
    tantivy_schema_version: int
    pages: int
    chunks: int
    built_at: str
    build_s: float
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    sizes: dict[str, int] = field(default_factory=dict)  # relative path -> bytes (absent before 0.1.1)

    def settings(self) -> dict:
        """The build and compression settings (what `fathom status` shows)."""
        return {k: getattr(self, k) for k in (
            "embedder", "embedder_dim", "chunk_unit", "chunk_words", "overlap_words", "min_words",
            "chunk_tokens", "overlap_tokens", "min_tokens", "chunk_hard_limit", "hnsw_m",
            "ef_construction", "ef_search", "compression_level", "tantivy_schema_version")}


_OPTIONAL = {"sizes"}
_REQUIRED = {f.name for f in dataclasses.fields(IndexManifest)} - _OPTIONAL


def write_manifest(directory: str, manifest: IndexManifest) -> None:
    tmp = os.path.join(directory, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(dataclasses.asdict(manifest), f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, "manifest.json"))


def read_manifest(directory: str) -> IndexManifest:
    """Read and validate manifest.json; a missing, unparsable or incomplete one is IndexCorrupt."""
    path = os.path.join(directory, "manifest.json")
    if not os.path.exists(path):
        raise IndexCorrupt(f"manifest missing: {path}; rebuild with `fathom index --rebuild`")
    try:
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format_version") != FORMAT_VERSION:
            from core.errors import IndexMismatch
            raise IndexMismatch(f"index format {data.get('format_version')} in {path}, this Fathom reads "
                                f"{FORMAT_VERSION}; rebuild with `fathom index --rebuild`")
        names = {f.name for f in dataclasses.fields(IndexManifest)} & (set(data) | _REQUIRED)
        missing = _REQUIRED - set(data)
        if missing:
            raise ValueError(f"missing keys {sorted(missing)}")
        manifest = IndexManifest(**{k: data[k] for k in names})
    except (ValueError, TypeError) as exc:
        raise IndexCorrupt(f"corrupt manifest {path}: {exc}; rebuild with `fathom index --rebuild`") from None
    return manifest


def verify_files(directory: str, manifest: IndexManifest, full: bool = True) -> None:
    """Check every recorded file; raise IndexCorrupt naming the first missing or damaged one.

    `full` hashes every file (seconds on a large index: what the build and `fathom status
    --verify` do). Otherwise a file is checked by its size, and hashed only when it was modified
    at or after manifest.json was written (files are all written before the manifest), so a
    truncated, zeroed or rewritten file is still caught while an untouched index opens at once."""
    manifest_path = os.path.join(directory, "manifest.json")
    try:
        written_ns = os.stat(manifest_path).st_mtime_ns
    except OSError:
        written_ns = 0
    for rel, digest in sorted(manifest.files.items()):
        path = os.path.join(directory, rel)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise IndexCorrupt(f"index file missing: {path}; {REBUILD_HINT}") from None
        except OSError as exc:
            raise IndexCorrupt(f"index file unreadable: {path} ({exc.strerror}); {REBUILD_HINT}") from None
        size = manifest.sizes.get(rel)
        if size is not None and st.st_size != size:
            raise IndexCorrupt(f"index file damaged (size {st.st_size} bytes, built as {size}): {path}; "
                               f"{REBUILD_HINT}")
        if full or size is None or st.st_mtime_ns >= written_ns:
            try:
                actual = sha256_file(path)
            except OSError as exc:
                raise IndexCorrupt(f"index file unreadable: {path} ({exc.strerror}); {REBUILD_HINT}") from None
            if actual != digest:
                raise IndexCorrupt(f"index file damaged (checksum mismatch): {path}; {REBUILD_HINT}")


REBUILD_HINT = "rebuild with `fathom index --rebuild`"
