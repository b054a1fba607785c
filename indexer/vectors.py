"""The dense side: an hnswlib HNSW index persisted at a chosen compression level.

hnswlib keeps float32 vectors inside its graph file. To shrink the index we cut the
vectors out of that file, store them at lower precision, and splice them back in on
load, so the graph (links, entry point, levels) is exactly the one that was built.

compression_level (bytes on disk per 384-d vector, plus links):
    0  float32 vectors, hnswlib's own file                      1536 B
    1  float16 vectors, graph stored raw                         768 B
    2  float16 vectors, graph deflated (zlib)                    768 B
    3  int8 scalar-quantised vectors (per-dimension scale), raw   384 B
    4  int8 vectors stored dimension-major and the graph,    ~324 B
       both xz-compressed (lzma)
Levels 1-4 are lossy only in the vectors; the in-memory index is float32 again after load.
Level 4's xz is lossless: laid out one dimension after another, the int8 codes of a dimension
(all scaled by the same maximum) compress to 84% (measured on the PostgreSQL docs index; zlib
reaches 89%), and xz shrinks the link lists to 25% of raw (zlib: 33%). Rescoring with
float vectors is not done: the originals are not kept, and int8 already costs < 0.005 nDCG.
hnswlib forgets `ef` on load, so ef_search is re-applied from the manifest.
"""
from __future__ import annotations

import io
import lzma
import os
import struct
import tempfile
import zlib

import hnswlib
import numpy as np

from core.errors import IndexCorrupt

LEVELS = (0, 1, 2, 3, 4)
_HEADER = struct.Struct("<QQQQQQiIQQQdQ")  # hnswalg.h saveIndex header, 96 bytes


def files_for_level(level: int) -> tuple[str, ...]:
    """The files the dense side writes at `level` (for the manifest's checksums)."""
    if level == 0:
        return ("hnsw.bin",)
    if level == 4:
        return ("graph.bin", "vectors.npy.xz", "scales.npy")
    return ("graph.bin", "vectors.npy", "scales.npy") if level == 3 else ("graph.bin", "vectors.npy")


def build_hnsw(vectors: np.ndarray, ids: np.ndarray, m: int, ef_construction: int,
               threads: int = 2) -> hnswlib.Index:
    """Build a cosine HNSW index over `vectors` labelled with `ids`."""
    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=max(1, len(ids)), ef_construction=ef_construction, M=m,
                     random_seed=100, allow_replace_deleted=False)
    index.set_num_threads(threads)
    if len(ids):
        index.add_items(vectors, ids)
    return index


def save_hnsw(index: hnswlib.Index, directory: str, level: int) -> None:
    """Write `index` into `directory` at compression `level`."""
    if level not in LEVELS:
        raise ValueError(f"compression_level must be one of {LEVELS}, got {level}")
    raw_path = os.path.join(directory, "hnsw.bin")
    index.save_index(raw_path)
    if level == 0:
        return
    with open(raw_path, "rb") as f:
        raw = f.read()
    os.remove(raw_path)
    graph, vecs = _split(raw, index.dim)
    if level == 2:
        graph = zlib.compress(graph, 6)
    elif level == 4:
        graph = lzma.compress(graph, preset=6)
    with open(os.path.join(directory, "graph.bin"), "wb") as f:
        f.write(graph)
    if level in (1, 2):
        np.save(os.path.join(directory, "vectors.npy"), vecs.astype(np.float16))
    else:
        scales = np.maximum(np.abs(vecs).max(axis=0), 1e-12).astype(np.float32) if len(vecs) else \
            np.ones(index.dim, np.float32)
        q = np.clip(np.rint(vecs / scales * 127.0), -127, 127).astype(np.int8)
        if level == 4:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(q.T))
            with open(os.path.join(directory, "vectors.npy.xz"), "wb") as f:
                f.write(lzma.compress(buf.getvalue(), preset=6))
        else:
            np.save(os.path.join(directory, "vectors.npy"), q)
        np.save(os.path.join(directory, "scales.npy"), scales)


def load_hnsw(directory: str, dim: int, level: int, ef_search: int, threads: int = 2) -> hnswlib.Index:
    """Load the index written by save_hnsw and re-apply `ef_search`."""
    index = hnswlib.Index(space="cosine", dim=dim)
    if level == 0:
        path = os.path.join(directory, "hnsw.bin")
        _require(path)
        try:
            index.load_index(path)
        except RuntimeError as exc:
            raise IndexCorrupt(f"cannot load {path}: {exc}") from None
    else:
        graph_path = os.path.join(directory, "graph.bin")
        vec_path = os.path.join(directory, "vectors.npy.xz" if level == 4 else "vectors.npy")
        _require(graph_path)
        _require(vec_path)
        with open(graph_path, "rb") as f:
            graph = f.read()
        try:
            if level == 2:
                graph = zlib.decompress(graph)
            elif level == 4:
                graph = lzma.decompress(graph)
            if level == 4:
                with open(vec_path, "rb") as f:
                    vecs = np.ascontiguousarray(np.load(io.BytesIO(lzma.decompress(f.read()))).T, np.float32)
            else:
                vecs = np.load(vec_path).astype(np.float32)
            if level >= 3:
                scales_path = os.path.join(directory, "scales.npy")
                _require(scales_path)
                vecs = vecs / 127.0 * np.load(scales_path)
            raw = _join(graph, vecs.astype(np.float32), dim)
        except (zlib.error, lzma.LZMAError, ValueError, struct.error) as exc:
            raise IndexCorrupt(f"damaged dense index in {directory}: {exc}") from None
        fd, tmp = tempfile.mkstemp(suffix=".hnsw")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            index.load_index(tmp)
        except RuntimeError as exc:
            raise IndexCorrupt(f"cannot load dense index in {directory}: {exc}") from None
        finally:
            os.remove(tmp)
    index.set_ef(ef_search)
    index.set_num_threads(threads)
    return index


def _require(path: str) -> None:
    if not os.path.exists(path):
        raise IndexCorrupt(f"index file missing: {path}; rebuild with `fathom index --rebuild`")


def _split(raw: bytes, dim: int) -> tuple[bytes, np.ndarray]:
    """hnswlib file → (file without vector payloads, float32 vectors in element order)."""
    head = _HEADER.unpack_from(raw, 0)
    count, size_per, offset_data = head[2], head[3], head[5]
    vec_bytes = dim * 4
    level0 = np.frombuffer(raw, np.uint8, count * size_per, _HEADER.size).reshape(count, size_per)
    vecs = level0[:, offset_data:offset_data + vec_bytes].copy().view(np.float32).reshape(count, dim)
    rest = np.concatenate([level0[:, :offset_data], level0[:, offset_data + vec_bytes:]], axis=1)
    graph = raw[:_HEADER.size] + rest.tobytes() + raw[_HEADER.size + count * size_per:]
    return graph, vecs


def _join(graph: bytes, vecs: np.ndarray, dim: int) -> bytes:
    head = _HEADER.unpack_from(graph, 0)
    count, size_per, offset_data = head[2], head[3], head[5]
    vec_bytes = dim * 4
    if vecs.shape != (count, dim):
        raise ValueError(f"vector file holds {vecs.shape}, graph expects ({count}, {dim})")
    stripped = size_per - vec_bytes
    rest = np.frombuffer(graph, np.uint8, count * stripped, _HEADER.size).reshape(count, stripped)
    level0 = np.concatenate([rest[:, :offset_data], vecs.view(np.uint8).reshape(count, vec_bytes),
                             rest[:, offset_data:]], axis=1)
    return graph[:_HEADER.size] + level0.tobytes() + graph[_HEADER.size + count * stripped:]
